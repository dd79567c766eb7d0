//! Tests of the trust store: loading, lookup and rotation rules.

use super::*;
use proptest::prelude::*;
use steward_testkit::{KeyType, Keygen};

const OP: &str = r#"namespaces="op@steward""#;
const REC: &str = r#"namespaces="recovery@steward""#;

struct Keys {
    _kg: Keygen,
    a: String,
    b: String,
    rsa1024: String,
}

fn keys() -> Keys {
    let kg = Keygen::new().unwrap();
    let a = kg
        .key(KeyType::Ed25519, "a")
        .unwrap()
        .public_type_and_blob();
    let b = kg
        .key(KeyType::EcdsaP256, "b")
        .unwrap()
        .public_type_and_blob();
    let rsa1024 = kg
        .key(KeyType::Rsa(1024), "weak")
        .unwrap()
        .public_type_and_blob();
    Keys {
        _kg: kg,
        a,
        b,
        rsa1024,
    }
}

fn load(text: &str) -> Result<TrustStore, LoadError> {
    TrustStore::parse("allowed_signers", text.as_bytes())
}

fn load_err(text: &str) -> LoadError {
    load(text).expect_err("should not load")
}

#[test]
fn reads_the_forms_openssh_reads() {
    let k = keys();
    let text = format!(
        "# Steward trust store\n\n   \n\
         alice@steward.test {OP} {a} alice's laptop key\n\
         \t\"bob@x,carol@x\" NAMESPACES=\"recovery@steward\",valid-after=\"20200101Z\",valid-before=\"20991231235959UTC\" {b}\r\n\
         *@steward.test cert-authority,{OP} {a}\n",
        a = k.a,
        b = k.b
    );
    let store = load(&text).unwrap();
    let e = store.entries();
    assert_eq!(e.len(), 3);
    assert_eq!(
        (e[0].line, e[0].role, e[0].principals.as_str()),
        (4, Role::Operational, "alice@steward.test")
    );
    assert_eq!(e[0].key.comment().as_bytes(), b"alice's laptop key");
    assert_eq!(
        (e[1].line, e[1].role, e[1].principals.as_str()),
        (5, Role::Recovery, "bob@x,carol@x")
    );
    assert_eq!(e[1].options.valid_after, Some(1_577_836_800));
    assert!(e[2].options.cert_authority);
}

#[test]
fn whitespace_between_key_type_and_blob_is_as_openssh_reads_it() {
    let k = keys();
    // Two spaces, and a tab, where OpenSSH's sshkey_read skips any run of whitespace.
    let (ty, blob) = k.a.split_once(' ').unwrap();
    let text = format!(
        "alice@steward.test {OP} {ty}  {blob}  laptop key\nbob@steward.test {OP} {ty}\t{blob}\n"
    );
    let store = load(&text).unwrap();
    assert_eq!(store.entries().len(), 2);
    assert_eq!(store.entries()[0].key.comment().as_bytes(), b"laptop key");
}

#[test]
fn every_load_error_names_file_line_and_cause() {
    let k = keys();
    let a = &k.a;
    let cases: Vec<(String, usize, &str)> = vec![
        (format!("# ok\nx {OP},octopus {a}\n"), 2, "unknown option"),
        (format!("x {a}\n"), 1, "both"),
        (
            format!("x namespaces=\"file\" {a}\n"),
            1,
            "no Steward namespace",
        ),
        (format!("x namespaces=\"*@steward\" {a}\n"), 1, "both"),
        (
            format!("x {OP} {a}\n\ny {REC} {a}\n"),
            3,
            "operational on line 1",
        ),
        (
            format!("x {OP},valid-after=20200101Z {a}\n"),
            1,
            "double quotes",
        ),
        (
            format!("x {OP},valid-after=\"20200101\" {a}\n"),
            1,
            "local time",
        ),
        (
            format!("x {OP} ssh-ed25519 AAAAnotbase64\n"),
            1,
            "cannot parse key",
        ),
        (format!("x {OP} {}\n", k.rsa1024), 1, "RSA key of 1024 bits"),
        (format!("x {OP}, {a}\n"), 1, ""),
        (
            format!("x {OP},valid-after=\"20300101Z\",valid-before=\"20200101Z\" {a}\n"),
            1,
            "not after",
        ),
        ("\"x y namespaces\n".to_string(), 1, "missing closing quote"),
        (format!("x {OP}\n"), 1, "cannot parse key"),
        (
            format!("x namespaces=\"op@steward,x\\\\\" {a}\n"),
            1,
            "closing quote",
        ),
        (
            format!("x {OP},valid-after=\"19700101Z\" {a}\n"),
            1,
            "after 1970",
        ),
        (format!("!* {OP} {a}\n"), 1, "no positive pattern"),
        (
            format!("alice,!alice {OP} {a}\n"),
            1,
            "every name is negated",
        ),
        (format!("al\"ice {OP} {a}\n"), 1, "quote inside"),
        // Negations that cover every positive pattern admit nobody.
        (format!("*,!* {OP} {a}\n"), 1, "every name is negated"),
        (format!("x*,!x* {OP} {a}\n"), 1, "every name is negated"),
        (format!("a?c,!a* {OP} {a}\n"), 1, "every name is negated"),
        // A control character in the principals field.
        (format!("\"ali\u{0}ce\" {OP} {a}\n"), 1, "control character"),
        (
            format!("\"ali\u{1b}ce\" {OP} {a}\n"),
            1,
            "control character",
        ),
        (format!("{} {OP} {a}\n", "x".repeat(1100)), 1, "1100 bytes"),
        (
            format!("x namespaces=\"op@steward,{}\" {a}\n", "y".repeat(1100)),
            1,
            "namespaces",
        ),
    ];
    for (text, line, why) in cases {
        let e = load_err(&text);
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.message.contains(why), "{text:?}: {e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("allowed_signers:{line}: ")),
            "{shown}"
        );
    }
    let bad_utf8 = load_err_bytes(b"# \xff\n");
    assert_eq!(bad_utf8.line, 1);
}

fn load_err_bytes(b: &[u8]) -> LoadError {
    TrustStore::parse("allowed_signers", b).expect_err("should not load")
}

#[test]
fn wildcard_principals_and_cr_separators_load() {
    let k = keys();
    // strdelim splits the principals on CR too; options end at a space or tab only.
    let store = load(&format!("*@x,!eve@x\r{OP}\t{a}\r\n", a = k.a)).unwrap();
    assert_eq!(store.entries()[0].principals, "*@x,!eve@x");
}

#[test]
fn same_key_same_role_twice_is_fine_and_first_window_that_holds_wins() {
    let k = keys();
    let text = format!(
        "old {OP},valid-before=\"20200101Z\" {a}\nnew {OP},valid-after=\"20200101Z\" {a}\n",
        a = k.a
    );
    let store = load(&text).unwrap();
    let kd = store.entries()[0].key.key_data().clone();
    let before = store.admit(&kd, OP_NAMESPACE, 1_500_000_000).unwrap();
    assert_eq!((before.entry.line, before.principal.as_str()), (1, "old"));
    let after = store.admit(&kd, OP_NAMESPACE, 1_600_000_000).unwrap();
    assert_eq!((after.entry.line, after.principal.as_str()), (2, "new"));
}

#[test]
fn admission_is_by_key_namespace_and_window() {
    let k = keys();
    let text = format!(
        "a {OP},valid-before=\"20250101Z\" {a}\nb {REC} {b}\n",
        a = k.a,
        b = k.b
    );
    let store = load(&text).unwrap();
    let a = store.entries()[0].key.key_data().clone();
    let b = store.entries()[1].key.key_data().clone();
    let t2024 = 1_704_067_200;
    assert_eq!(
        store.admit(&a, OP_NAMESPACE, t2024).unwrap().role,
        Role::Operational
    );
    let late = store
        .admit(&a, OP_NAMESPACE, t2024 + 400 * 86400)
        .unwrap_err();
    assert_eq!(late.reason, Reason::UnknownSigner);
    assert!(late.detail.contains("window"), "{late}");
    let wrong_ns = store.admit(&b, OP_NAMESPACE, t2024).unwrap_err();
    assert_eq!(wrong_ns.reason, Reason::UnknownSigner);
    assert!(wrong_ns.detail.contains("not admitted"), "{wrong_ns}");
    assert_eq!(
        store.admit(&b, RECOVERY_NAMESPACE, t2024).unwrap().role,
        Role::Recovery
    );
    // valid-before is inclusive, as in OpenSSH.
    assert!(store.admit(&a, OP_NAMESPACE, 1_735_689_600).is_ok());
    assert!(store.admit(&a, OP_NAMESPACE, 1_735_689_601).is_err());
}

#[test]
fn a_plain_line_never_admits_a_ca_and_vice_versa() {
    let k = keys();
    let store = load(&format!("*@x cert-authority,{OP} {a}\n", a = k.a)).unwrap();
    let a = store.entries()[0].key.key_data().clone();
    assert_eq!(
        store.admit(&a, OP_NAMESPACE, 0).unwrap_err().reason,
        Reason::UnknownSigner
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = TrustStore::parse("fuzz", &bytes);
    }

    #[test]
    fn parser_never_panics_on_line_shaped_text(
        principals in "[a-z*?!,@\"]{0,12}",
        opts in "(cert-authority|namespaces=\"[a-z@*,!]{0,12}\"|valid-(after|before)=\"[0-9]{0,14}(Z|UTC)?\"|[a-z=\",]{0,8})(,(cert-authority|namespaces=\"[a-z@]{0,10}\"|[a-z=\"]{0,6})){0,3}",
        key in "(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|[a-z-]{0,10}) [A-Za-z0-9+/=]{0,80}",
        comment in "[ -~]{0,20}",
    ) {
        let line = format!("{principals} {opts} {key} {comment}\n");
        let _ = TrustStore::parse("fuzz", line.as_bytes());
    }
}
