//! Self-managed TLS without the apiserver: the CA and leaf it makes, and the caBundle merge that
//! lets several replicas share one bundle (dedupe, drop expired, unparsable and retired
//! certificates, cap the Hush CAs from the front, keep live ones fresh), and the withdrawal at
//! shutdown (all of ours out, nothing else touched). The apiserver side is in
//! tests/tests/self_managed_tls.rs. These are unit tests of the module's private functions.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{KEEP_FRESH_WITHIN, MAX_HUSH_CAS, issue, merge_bundle, pem_encode, withdraw_bundle};
use crate::config::SelfManagedTls;
use crate::tls::ReloadingCert;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;

fn cfg() -> SelfManagedTls {
    SelfManagedTls {
        service: "hush.hush-system.svc".into(),
        webhook_configuration: "hush".into(),
        validity: Duration::from_secs(86_400),
        sans: vec!["hush.hush-system.svc".into(), "127.0.0.1".into()],
    }
}

/// A CA that is not ours (an operator's), valid for `days` from now (negative: expired).
fn other_ca(days: i64) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "operator CA");
    p.not_before = now - time::Duration::days(400);
    p.not_after = now + time::Duration::days(days);
    let key = KeyPair::generate().expect("key");
    p.self_signed(&key).expect("self-signed").der().to_vec()
}

fn hush_ca(now: SystemTime) -> Vec<u8> {
    issue(&cfg(), now).expect("issue").ca_der
}

fn pem(ders: &[&[u8]]) -> Vec<u8> {
    ders.iter()
        .map(|d| pem_encode(d))
        .collect::<String>()
        .into_bytes()
}

fn ders(bundle: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(bundle.as_bytes())
        .map(|d| d.expect("pem").as_ref().to_vec())
        .collect()
}

#[test]
fn issued_leaf_is_served_and_chains_to_the_published_ca() {
    let now = SystemTime::now();
    let issued = issue(&cfg(), now).expect("issue");
    let certs = ReloadingCert::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())
        .expect("pair");
    let served = certs.current();
    let (_, leaf) = x509_parser::parse_x509_certificate(served.cert[0].as_ref()).expect("leaf");
    let (_, ca) = x509_parser::parse_x509_certificate(&issued.ca_der).expect("ca");
    assert_eq!(leaf.issuer(), ca.subject());
    assert!(ca.is_ca() && !leaf.is_ca());
    // The same check a TLS client makes: the leaf chains to the CA for the service's name.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(issued.ca_der.clone()))
        .expect("root");
    use rustls::client::danger::ServerCertVerifier as _;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .expect("verifier");
    for name in ["hush.hush-system.svc", "127.0.0.1"] {
        let name = rustls::pki_types::ServerName::try_from(name).expect("name");
        verifier
            .verify_server_cert(
                &served.cert[0],
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("the leaf verifies against the CA");
    }
    assert!(format!("{:?}", issued).contains("[redacted]"));
}

#[test]
fn adds_ours_keeps_others_and_drops_duplicates() {
    let now = SystemTime::now();
    let operator = other_ca(30);
    let replica_b = hush_ca(now);
    let ours = hush_ca(now);
    let a = pem(&[&operator, &replica_b]);
    let b = pem(&[&replica_b, &operator]);
    let (out, report) = merge_bundle(&[&a, &b, &[]], &ours, &[], now);
    assert_eq!(ders(&out), vec![operator, replica_b, ours.clone()]);
    assert!(report.added);
    assert_eq!(report.kept, 3);
    // Idempotent: merging the result again changes no byte, so nobody rewrites it.
    let (again, report) = merge_bundle(&[out.as_bytes()], &ours, &[], now);
    assert_eq!(again, out);
    assert!(!report.added && !report.moved);
}

#[test]
fn drops_expired_unparsable_and_retired() {
    let now = SystemTime::now();
    let expired = other_ca(-1);
    let retired = hush_ca(now);
    let ours = hush_ca(now);
    let garbage = pem(&[b"not a certificate"]);
    let mut bundle = pem(&[&expired, &retired]);
    bundle.extend_from_slice(&garbage);
    let (out, report) = merge_bundle(
        &[&bundle, b"junk"],
        &ours,
        std::slice::from_ref(&retired),
        now,
    );
    assert_eq!(ders(&out), vec![ours]);
    assert_eq!(
        (report.expired, report.unparsable, report.retired),
        (1, 1, 1)
    );
}

#[test]
fn caps_hush_cas_from_the_front_never_ours_nor_the_operators() {
    let now = SystemTime::now();
    let operator = other_ca(30);
    let old: Vec<Vec<u8>> = (0..MAX_HUSH_CAS + 2).map(|_| hush_ca(now)).collect();
    let ours = hush_ca(now);
    let mut all: Vec<&[u8]> = vec![&operator];
    all.extend(old.iter().map(Vec::as_slice));
    let (out, report) = merge_bundle(&[&pem(&all)], &ours, &[], now);
    let got = ders(&out);
    assert_eq!(report.over_cap, 3);
    assert_eq!(got.len(), MAX_HUSH_CAS + 1);
    assert_eq!(got[0], operator);
    assert_eq!(got[1..MAX_HUSH_CAS], old[3..]);
    assert_eq!(got[MAX_HUSH_CAS], ours);
}

#[test]
fn a_live_ca_behind_newer_ones_moves_to_the_end_so_it_is_not_pruned() {
    let now = SystemTime::now();
    let ours = hush_ca(now);
    let newer: Vec<Vec<u8>> = (0..KEEP_FRESH_WITHIN).map(|_| hush_ca(now)).collect();
    let mut all: Vec<&[u8]> = vec![&ours];
    all.extend(newer.iter().map(Vec::as_slice));
    let (out, report) = merge_bundle(&[&pem(&all)], &ours, &[], now);
    assert!(report.moved && !report.added);
    assert_eq!(ders(&out).last(), Some(&ours));
    // One fewer newer CA: it stays put.
    let (out, report) = merge_bundle(&[&pem(&all[..KEEP_FRESH_WITHIN])], &ours, &[], now);
    assert!(!report.moved);
    assert_eq!(ders(&out)[0], ours);
}

#[test]
fn two_replicas_converge_without_undoing_each_other() {
    let now = SystemTime::now();
    let (a, b) = (hush_ca(now), hush_ca(now));
    let (after_a, _) = merge_bundle(&[], &a, &[], now);
    let (after_b, _) = merge_bundle(&[after_a.as_bytes()], &b, &[], now);
    let (again_a, report) = merge_bundle(&[after_b.as_bytes()], &a, &[], now);
    assert_eq!(again_a, after_b);
    assert!(!report.added && !report.moved);
    assert_eq!(ders(&after_b), vec![a, b]);
}

#[test]
fn withdrawing_drops_all_of_ours_and_keeps_everyone_elses() {
    let now = SystemTime::now();
    let operator = other_ca(30);
    let (replica_b, ours, our_old, our_pending) =
        (hush_ca(now), hush_ca(now), hush_ca(now), hush_ca(now));
    let bundle = pem(&[&operator, &our_old, &replica_b, &ours, &our_pending]);
    let mine = vec![ours.clone(), our_pending, our_old];
    let (out, report) = withdraw_bundle(&[&bundle, &bundle], &mine, now);
    assert_eq!(ders(&out), vec![operator, replica_b.clone()]);
    assert_eq!(report.retired, 3);
    assert!(!report.added && !report.moved);
    // Idempotent, and never adds ours back.
    let (again, _) = withdraw_bundle(&[out.as_bytes()], &mine, now);
    assert_eq!(again, out);
    // The other replica's next publication keeps the bundle as it is.
    let (after_b, report) = merge_bundle(&[out.as_bytes()], &replica_b, &[], now);
    assert_eq!(after_b, out);
    assert!(!report.added);
}

#[test]
fn the_last_replica_withdrawing_leaves_an_empty_bundle() {
    let now = SystemTime::now();
    let ours = hush_ca(now);
    let (out, report) = withdraw_bundle(&[&pem(&[&ours])], &[ours], now);
    assert_eq!(out, "");
    assert_eq!(report.kept, 0);
    // The next replica publishes into it as into a new configuration.
    let next = hush_ca(now);
    let (after, report) = merge_bundle(&[out.as_bytes()], &next, &[], now);
    assert!(report.added);
    assert_eq!(ders(&after), vec![next]);
}

#[test]
fn self_managed_metrics_are_registered_only_in_that_mode() {
    use crate::metrics::{Metrics, Publication};
    let m = Metrics::with_self_managed_tls();
    m.ca_publication(Publication::Written);
    m.ca_publication(Publication::Conflict);
    m.serving_cert_expires(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000));
    let text = m.encode();
    assert!(
        text.contains("hush_injector_ca_publications_total{outcome=\"written\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("hush_injector_ca_publications_total{outcome=\"conflict\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("hush_injector_serving_cert_expiry_timestamp_seconds 1900000000\n"),
        "{text}"
    );
    let plain = Metrics::new().encode();
    assert!(
        !plain.contains("ca_publications") && !plain.contains("serving_cert_expiry"),
        "{plain}"
    );
}
