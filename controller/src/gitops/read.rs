//! Reading a revision: every `*.yaml`/`*.yml` under the TrustSource's path, straight from the
//! commit's tree in the cache repository (no checkout, so nothing on disk can be swapped in),
//! parsed with serde-saphyr under a budget, and validated as a whole. Only cluster-scoped
//! `countersign.dev/v1alpha1` TrustRoots and KeyRotations are accepted; every refusal names the
//! file, the document index and the field.
//!
//! [`parse_file`] and [`Collector`] are pure; [`read_tree`] walks a git2 tree with them.

use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository, TreeEntry};
use serde_json::{Value, json};

use super::error::{Error, invalid};
use crate::crd::{GROUP, KeyRotation, MAX_OBJECTS, SOURCE_LABEL, TrustRoot, VERSION};

/// Bounds on what one revision may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of one YAML file.
    pub max_file_bytes: usize,
    /// Tree entries walked under the path (files and folders, YAML or not).
    pub max_entries: usize,
    /// Objects declared.
    pub max_objects: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 20,
            max_entries: 10_000,
            max_objects: MAX_OBJECTS,
        }
    }
}

/// The two kinds a TrustSource may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    TrustRoot,
    KeyRotation,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TrustRoot => "TrustRoot",
            Self::KeyRotation => "KeyRotation",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "TrustRoot" => Some(Self::TrustRoot),
            "KeyRotation" => Some(Self::KeyRotation),
            _ => None,
        }
    }
}

/// One object of the revision, validated, as it will be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub kind: Kind,
    pub name: String,
    /// Where it is declared: file (relative to the repository root) and document index.
    pub file: String,
    pub document: usize,
    /// The object to apply: `apiVersion`, `kind`, `metadata` (name, labels with the source
    /// label, annotations) and `spec`, as declared.
    pub body: Value,
}

/// The whole revision, sorted: TrustRoots first (KeyRotations refer to them), then by name.
pub type Revision = Vec<Declared>;

/// Reads and validates every object under `path` in `commit` for the TrustSource `source`.
pub fn read_tree(
    repo: &Repository,
    commit: Oid,
    path: &str,
    source: &str,
    limits: Limits,
) -> Result<Revision, Error> {
    let git = |e: git2::Error| invalid(path, None, None, e.message().to_string());
    let tree = repo.find_commit(commit).and_then(|c| c.tree()).map_err(git)?;
    let root = path.trim_matches('/');
    let start = folder_at(repo, tree, root)?;
    let mut collector = Collector::new(source, limits);
    let mut stack = vec![(root.to_string(), start)];
    let mut entries = 0usize;
    while let Some((dir, tree)) = stack.pop() {
        for entry in tree.iter() {
            entries += 1;
            if entries > limits.max_entries {
                let message = format!(
                    "more than {} files and folders under the path",
                    limits.max_entries
                );
                return Err(invalid(root, None, None, message));
            }
            let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
            let file = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    let sub = entry
                        .to_object(repo)
                        .and_then(|o| o.peel_to_tree())
                        .map_err(git)?;
                    stack.push((file, sub));
                }
                Some(ObjectType::Blob) if entry.filemode() == 0o120000 => {
                    check_link(repo, &entry, root, &file)?;
                }
                Some(ObjectType::Blob) if is_yaml(&name) => {
                    let blob = read_file(repo, &entry, &file, path, limits)?;
                    collector.add(&file, &parse_file(&file, blob.content(), limits)?)?;
                }
                // Submodules (commits) and other files are not ours to read.
                _ => {}
            }
        }
    }
    Ok(collector.finish())
}

/// The folder at `root` (the whole tree when empty), or an error naming it.
fn folder_at<'r>(repo: &'r Repository, tree: git2::Tree<'r>, root: &str) -> Result<git2::Tree<'r>, Error> {
    if root.is_empty() {
        return Ok(tree);
    }
    let entry = tree
        .get_path(std::path::Path::new(root))
        .map_err(|_| invalid(root, None, None, "the path does not exist in this commit"))?;
    entry
        .to_object(repo)
        .and_then(|o| o.peel_to_tree())
        .map_err(|_| invalid(root, None, None, "the path is not a folder"))
}

/// One file, unless it is larger than one file may be. A Git error names `path`,
/// the TrustSource's folder, as every Git error of the read does.
fn read_file<'r>(
    repo: &'r Repository,
    entry: &git2::TreeEntry<'_>,
    file: &str,
    path: &str,
    limits: Limits,
) -> Result<git2::Blob<'r>, Error> {
    let blob = repo
        .find_blob(entry.id())
        .map_err(|e| invalid(path, None, None, e.message().to_string()))?;
    if blob.size() > limits.max_file_bytes {
        let message = format!(
            "{} bytes, more than the {} allowed for one file",
            blob.size(),
            limits.max_file_bytes
        );
        return Err(invalid(file, None, None, message));
    }
    Ok(blob)
}

fn is_yaml(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// A symlink is never followed (the tree is read, not a checkout); one pointing outside the path
/// is refused, since whoever wrote it meant something to be read from there.
fn check_link(repo: &Repository, entry: &TreeEntry<'_>, root: &str, file: &str) -> Result<(), Error> {
    let target = repo
        .find_blob(entry.id())
        .map(|b| String::from_utf8_lossy(b.content()).into_owned())
        .unwrap_or_default();
    if link_stays_inside(file, &target, root) {
        Ok(())
    } else {
        Err(invalid(
            file,
            None,
            None,
            format!("a symbolic link to {target:?}, outside the path {root:?}"),
        ))
    }
}

/// Whether the link at `file` (relative to the repository root) pointing to `target` resolves
/// inside `root` (a folder relative to the repository root; empty = the whole repository).
pub fn link_stays_inside(file: &str, target: &str, root: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut parts: Vec<&str> = file.split('/').filter(|p| !p.is_empty()).collect();
    parts.pop();
    for segment in target.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return false;
                }
            }
            s => parts.push(s),
        }
    }
    let resolved = parts.join("/");
    root.is_empty() || resolved == root || resolved.starts_with(&format!("{root}/"))
}

/// Parses the YAML stream of one file into its documents, each checked on its own.
pub fn parse_file(
    file: &str,
    bytes: &[u8],
    limits: Limits,
) -> Result<Vec<(usize, Kind, String, Value)>, Error> {
    if bytes.len() > limits.max_file_bytes {
        return Err(invalid(file, None, None, "the file is too large"));
    }
    let text =
        std::str::from_utf8(bytes).map_err(|e| invalid(file, None, None, format!("not UTF-8: {e}")))?;
    // Kubernetes YAML has no use for many anchors: a small budget refuses alias bombs early.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: 200_000,
            max_aliases: 256,
            max_anchors: 256,
            max_recorded_anchor_events: 20_000,
            max_reader_input_bytes: Some(limits.max_file_bytes),
        },
    };
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
        invalid(
            file,
            None,
            None,
            format!("not valid YAML: {}", first_line(&e.to_string())),
        )
    })?;
    documents
        .into_iter()
        .enumerate()
        .map(|(i, doc)| {
            let (kind, name, body) = check_document(file, i, doc)?;
            Ok((i, kind, name, body))
        })
        .collect()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// One document: the right group, version and kind, cluster-scoped, valid as its type.
fn check_document(file: &str, i: usize, doc: Value) -> Result<(Kind, String, Value), Error> {
    let at = |field: &str, message: String| invalid(file, Some(i), Some(field), message);
    let Value::Object(mut map) = doc else {
        return Err(invalid(
            file,
            Some(i),
            None,
            "a document must be a mapping (an object)",
        ));
    };
    let kind = check_kind(&map).map_err(|(field, message)| at(field, message))?;
    let metadata = map.remove("metadata").unwrap_or(Value::Null);
    let (name, metadata) = check_metadata(kind, &metadata).map_err(|(field, message)| at(field, message))?;
    map.insert("metadata".into(), metadata);
    let body = Value::Object(map);
    check_as_type(kind, file, i, &body)?;
    Ok((kind, name, body))
}

/// `apiVersion` and `kind`: one of ours. No `status`: countersign writes it. An error names its
/// field.
fn check_kind(map: &serde_json::Map<String, Value>) -> Result<Kind, (&'static str, String)> {
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let expected = format!("{GROUP}/{VERSION}");
    if api_version != expected {
        let message = format!("{api_version:?}: only {expected} objects are accepted from a TrustSource");
        return Err(("apiVersion", message));
    }
    let kind_text = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    let kind = Kind::parse(kind_text).ok_or_else(|| {
        let message =
            format!("{kind_text:?}: only TrustRoot and KeyRotation are accepted from a TrustSource");
        ("kind", message)
    })?;
    if map.contains_key("status") {
        return Err(("status", "status is written by countersign, not declared".into()));
    }
    Ok(kind)
}

/// A valid name, no namespace (both kinds are cluster-scoped), labels a mapping. Returns the name
/// and the metadata to apply: name, labels and annotations, nothing else the file says. Whatever
/// the labels say, the source label is set to the TrustSource applying it (by `Collector::add`).
fn check_metadata(kind: Kind, metadata: &Value) -> Result<(String, Value), (&'static str, String)> {
    let name = metadata
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !is_dns_subdomain(&name) {
        let message =
            format!("{name:?} is not a valid name (lowercase letters, digits, '-' and '.', at most 253)");
        return Err(("metadata.name", message));
    }
    if metadata.get("namespace").is_some_and(|n| !n.is_null()) {
        let message = format!("{} is cluster-scoped: remove metadata.namespace", kind.as_str());
        return Err(("metadata.namespace", message));
    }
    let labels = metadata.get("labels").cloned().unwrap_or_else(|| json!({}));
    if !labels.is_object() {
        return Err(("metadata.labels", "labels must be a mapping".into()));
    }
    let mut meta = json!({"name": name, "labels": labels});
    if let Some(annotations) = metadata.get("annotations").filter(|a| !a.is_null()) {
        meta["annotations"] = annotations.clone();
    }
    Ok((name, meta))
}

/// The document as its type, validated as the API server's admission would: the first invalid
/// field is the error's location, every one is in its message.
fn check_as_type(kind: Kind, file: &str, i: usize, body: &Value) -> Result<(), Error> {
    match kind {
        Kind::TrustRoot => {
            let root: TrustRoot = typed(file, i, body)?;
            if let Err(errors) = root.validate() {
                let first = errors.first().map(|e| e.path.clone());
                let mut parts = errors.iter().map(ToString::to_string).collect::<Vec<_>>();
                if let Some(e) = errors.first() {
                    parts[0] = e.message.clone();
                }
                return Err(invalid(file, Some(i), first.as_deref(), parts.join("; ")));
            }
        }
        Kind::KeyRotation => {
            let rotation: KeyRotation = typed(file, i, body)?;
            rotation
                .window_duration()
                .map_err(|e| invalid(file, Some(i), Some(&e.path), e.message))?;
            if rotation.spec.from_key == rotation.spec.to_key {
                let message = "fromKey and toKey must name two different keys";
                return Err(invalid(file, Some(i), Some("spec.toKey"), message));
            }
        }
    }
    Ok(())
}

fn typed<T: serde::de::DeserializeOwned>(file: &str, i: usize, body: &Value) -> Result<T, Error> {
    serde_json::from_value(body.clone()).map_err(|e| invalid(file, Some(i), Some("spec"), e.to_string()))
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Gathers the objects of a revision: refuses duplicates (naming both places) and more than
/// the allowed number.
pub struct Collector {
    source: String,
    limits: Limits,
    seen: BTreeMap<(Kind, String), Declared>,
}

impl Collector {
    pub fn new(source: &str, limits: Limits) -> Self {
        Self {
            source: source.into(),
            limits,
            seen: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, file: &str, objects: &[(usize, Kind, String, Value)]) -> Result<(), Error> {
        for (document, kind, name, body) in objects {
            if let Some(first) = self.seen.get(&(*kind, name.clone())) {
                return Err(invalid(
                    file,
                    Some(*document),
                    Some("metadata.name"),
                    format!(
                        "{} {name} is already declared in {} (document {})",
                        kind.as_str(),
                        first.file,
                        first.document
                    ),
                ));
            }
            if self.seen.len() >= self.limits.max_objects {
                return Err(invalid(
                    file,
                    Some(*document),
                    None,
                    format!("more than {} objects in the revision", self.limits.max_objects),
                ));
            }
            let mut body = body.clone();
            body["metadata"]["labels"][SOURCE_LABEL] = Value::String(self.source.clone());
            self.seen.insert(
                (*kind, name.clone()),
                Declared {
                    kind: *kind,
                    name: name.clone(),
                    file: file.into(),
                    document: *document,
                    body,
                },
            );
        }
        Ok(())
    }

    pub fn finish(self) -> Revision {
        self.seen.into_values().collect()
    }
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
