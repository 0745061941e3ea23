use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn config() -> CertConfig {
    CertConfig {
        namespace: "countersign-system".into(),
        secret: "countersign-webhook-tls".into(),
        configuration: "countersign".into(),
        names: Names {
            dns: vec!["countersign-webhook.countersign-system.svc".into()],
            ips: Vec::new(),
        },
        ca_validity: 100 * DAY,
        cert_validity: 30 * DAY,
        manage: true,
    }
}

fn planned(stored: Option<&Stored>, at: SystemTime, trusted: bool) -> Option<Stored> {
    plan(stored, &config(), at, trusted).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn nothing_stored_makes_a_ca_and_a_serving_certificate_it_signed() {
    let now = SystemTime::now();
    let made = planned(None, now, false).unwrap_or_else(|| panic!("new certificates"));
    let ca = made.ca.clone().unwrap_or_else(|| panic!("a CA"));
    assert_eq!(made.bundle, ca.cert);
    let serving = certs::facts(&made.serving.cert).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        serving.issuer,
        certs::facts(&ca.cert).map(|f| f.subject).unwrap_or_default()
    );
    assert_eq!(planned(Some(&made), now, true), None, "in step: nothing to do");
    // Names asked for change (a new Service name): a new serving certificate, same CA.
    let mut other = config();
    other.names.dns.push("countersign-webhook.other.svc".into());
    let renamed = plan(Some(&made), &other, now, true)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("reissued"));
    assert_eq!(
        (renamed.bundle.as_str(), &renamed.ca),
        (made.bundle.as_str(), &made.ca)
    );
    assert_ne!(renamed.serving, made.serving);
}

#[test]
fn the_serving_certificate_is_renewed_past_two_thirds_of_its_life() {
    let now = SystemTime::now();
    let made = planned(None, now, false).unwrap_or_else(|| panic!("new certificates"));
    assert_eq!(planned(Some(&made), now + 19 * DAY, true), None);
    let renewed = planned(Some(&made), now + 21 * DAY, true).unwrap_or_else(|| panic!("renewed"));
    assert_eq!(renewed.bundle, made.bundle);
    assert_ne!(renewed.serving, made.serving);
}

#[test]
fn a_new_ca_is_trusted_before_it_signs_anything() {
    let now = SystemTime::now();
    let first = planned(None, now, false).unwrap_or_else(|| panic!("new certificates"));
    // The serving certificate is renewed regularly; the CA's turn comes with a young one.
    let made = planned(Some(&first), now + 79 * DAY, true).unwrap_or_else(|| panic!("renewed"));
    let later = now + 81 * DAY;
    let step1 = planned(Some(&made), later, true).unwrap_or_else(|| panic!("a new CA"));
    assert_eq!(
        step1.serving, made.serving,
        "still serving the old CA's certificate"
    );
    assert!(step1.bundle.ends_with(&made.bundle) && step1.bundle.len() > made.bundle.len());
    // Until the configurations trust the new CA, the serving certificate stays.
    assert_eq!(planned(Some(&step1), later, false), None);
    let step2 = planned(Some(&step1), later, true).unwrap_or_else(|| panic!("reissued"));
    let issuer = certs::facts(&step2.serving.cert)
        .map(|f| f.issuer)
        .unwrap_or_default();
    let new_ca = step1
        .ca
        .as_ref()
        .map(|c| certs::facts(&c.cert).map(|f| f.subject).unwrap_or_default());
    assert_eq!(Some(issuer), new_ca);
    // Once the old CA has expired, it leaves the bundle.
    let expired = planned(Some(&step2), now + 101 * DAY, true).unwrap_or_else(|| panic!("pruned"));
    assert_eq!(
        certs::der_chain(&expired.bundle)
            .map(|c| c.len())
            .map_err(|e| e.to_string()),
        Ok(1)
    );
}
