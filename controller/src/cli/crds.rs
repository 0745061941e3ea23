//! `countersign crds`: print the CustomResourceDefinitions, or write them as the files of `crds/`.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use crate::crd;

/// Arguments of `countersign crds`.
#[derive(Debug, clap::Args)]
pub struct CrdsArgs {
    /// Write one file per CRD (`<group>_<plural>.yaml`) into DIR instead of printing a
    /// multi-document YAML stream.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

/// Prints the CRDs as one multi-document YAML stream, or writes them into `--write DIR`.
pub fn print_crds(args: &CrdsArgs) -> ExitCode {
    let result = match &args.write {
        Some(dir) => write_files(dir),
        None => print_stream(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("countersign crds: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_stream() -> Result<(), String> {
    let yaml = crd::all_to_yaml().map_err(|e| format!("cannot render the CRDs: {e}"))?;
    std::io::stdout()
        .lock()
        .write_all(yaml.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

fn write_files(dir: &Path) -> Result<(), String> {
    let files = crd::files().map_err(|e| format!("cannot render the CRDs: {e}"))?;
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for file in files {
        let path = dir.join(&file.name);
        fs::write(&path, file.contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
