use super::*;

const TRUST_ROOT: &str = include_str!("../../../manifests/samples/trustroot.yaml");
const KEY_ROTATION: &str = include_str!("../../../manifests/samples/keyrotation.yaml");

fn parse(file: &str, yaml: &str) -> Result<Vec<(usize, Kind, String, Value)>, Error> {
    parse_file(file, yaml.as_bytes(), Limits::default())
}

/// The error's location and message, or a panic naming what was accepted.
fn refused(file: &str, yaml: &str) -> (Option<usize>, Option<String>, String) {
    match parse(file, yaml) {
        Ok(objects) => panic!("accepted: {objects:?}"),
        Err(Error::Invalid { location, message }) => {
            assert_eq!(location.file.as_deref(), Some(file));
            (location.document, location.field, message)
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn the_samples_are_accepted_with_our_label() {
    let objects = parse("a.yaml", &format!("{TRUST_ROOT}\n---\n{KEY_ROTATION}")).unwrap();
    let kinds: Vec<_> = objects.iter().map(|(i, k, n, _)| (*i, *k, n.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (0, Kind::TrustRoot, "payments-prod"),
            (1, Kind::KeyRotation, "payments-prod-ci-2026")
        ]
    );
    let mut collector = Collector::new("team", Limits::default());
    collector.add("a.yaml", &objects).unwrap();
    let revision = collector.finish();
    assert_eq!(revision[0].body["metadata"]["labels"][SOURCE_LABEL], "team");
    assert_eq!(revision[0].body["spec"]["keys"][0]["name"], "ci-2025");
}

#[test]
fn other_kinds_groups_and_namespaces_are_refused_naming_the_field() {
    let (doc, field, message) = refused(
        "x.yaml",
        &format!("{TRUST_ROOT}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n"),
    );
    assert_eq!((doc, field.as_deref()), (Some(1), Some("apiVersion")));
    assert!(message.contains("only countersign.dev/v1alpha1"), "{message}");

    let (doc, field, _) = refused(
        "x.yaml",
        "apiVersion: countersign.dev/v1alpha1\nkind: TrustSource\nmetadata: {name: x}\n",
    );
    assert_eq!((doc, field.as_deref()), (Some(0), Some("kind")));

    let namespaced = TRUST_ROOT.replace(
        "  name: payments-prod",
        "  name: payments-prod\n  namespace: default",
    );
    let (_, field, message) = refused("x.yaml", &namespaced);
    assert_eq!(field.as_deref(), Some("metadata.namespace"));
    assert!(message.contains("cluster-scoped"), "{message}");
}

#[test]
fn an_invalid_spec_names_the_field_of_the_first_error() {
    let broken = TRUST_ROOT.replace("reverifyInterval: 10m", "reverifyInterval: 10 minutes");
    let (doc, field, message) = refused("roots/p.yaml", &broken);
    assert_eq!((doc, field.as_deref()), (Some(0), Some("spec.reverifyInterval")));
    assert!(message.contains("not a duration"), "{message}");

    let bad_pem = TRUST_ROOT.replace(
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1WANxE1OU1KaI7tHSDWuz4PfiKs0",
        "AAAA",
    );
    let (_, field, _) = refused("roots/p.yaml", &bad_pem);
    assert_eq!(field.as_deref(), Some("spec.keys[0].publicKey"));

    let same_keys = KEY_ROTATION.replace("toKey: ci-2026", "toKey: ci-2025");
    let (_, field, _) = refused("r.yaml", &same_keys);
    assert_eq!(field.as_deref(), Some("spec.toKey"));
}

#[test]
fn duplicates_name_both_places() {
    let objects = parse("a.yaml", TRUST_ROOT).unwrap();
    let mut collector = Collector::new("team", Limits::default());
    collector.add("a.yaml", &objects).unwrap();
    match collector.add("b.yaml", &objects) {
        Err(Error::Invalid { location, message }) => {
            assert_eq!(location.file.as_deref(), Some("b.yaml"));
            assert_eq!(location.field.as_deref(), Some("metadata.name"));
            assert!(
                message.contains("already declared in a.yaml (document 0)"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn too_many_objects_are_refused() {
    let objects = parse("a.yaml", &format!("{TRUST_ROOT}\n---\n{KEY_ROTATION}")).unwrap();
    let limits = Limits {
        max_objects: 1,
        ..Limits::default()
    };
    let mut collector = Collector::new("team", limits);
    let Err(Error::Invalid { message, .. }) = collector.add("a.yaml", &objects) else {
        panic!("accepted two objects with a limit of one");
    };
    assert!(message.contains("more than 1 objects"), "{message}");
}

#[test]
fn alias_bombs_and_oversized_files_are_refused() {
    // The "billion laughs": each level doubles nine times over.
    let mut bomb = String::from(
        "apiVersion: countersign.dev/v1alpha1\nkind: TrustRoot\na0: &a0 [x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let (doc, _, message) = refused("bomb.yaml", &bomb);
    assert_eq!(doc, None);
    assert!(message.starts_with("not valid YAML"), "{message}");

    let limits = Limits {
        max_file_bytes: 100,
        ..Limits::default()
    };
    assert!(parse_file("big.yaml", TRUST_ROOT.as_bytes(), limits).is_err());
    let (_, _, message) = refused("syntax.yaml", "a: [unclosed\n");
    assert!(message.starts_with("not valid YAML"), "{message}");
}

#[test]
fn links_may_not_leave_the_path() {
    assert!(link_stays_inside("trust/a.yaml", "b.yaml", "trust"));
    assert!(link_stays_inside("trust/x/a.yaml", "../b.yaml", "trust"));
    assert!(!link_stays_inside("trust/a.yaml", "../secrets.yaml", "trust"));
    assert!(!link_stays_inside("trust/a.yaml", "/etc/passwd", "trust"));
    assert!(!link_stays_inside("a.yaml", "../../x", ""));
    assert!(link_stays_inside("a.yaml", "b/c.yaml", ""));
    assert!(!link_stays_inside("trust/a.yaml", "../trusted/b.yaml", "trust"));
}
