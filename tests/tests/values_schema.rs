//! The operator part of the chart's `values.schema.json` is generated from the sidecar's own
//! `OperatorSettings` (schemars, bounds from `hush_config::limits`), so the chart refuses
//! at `helm install` what the injector would refuse at start, and the two cannot drift apart. The
//! generated schemas sit in the file's trailing `definitions` block, one per operator field
//! (`operator.vault.addr`, ...); the chart's values keep their places (`sidecar.metricsPort`,
//! `vault.addr`, ...) and point there with `$ref`. `HUSH_BLESS=1 cargo test --workspace --test
//! values_schema` rewrites the block; without it, a difference fails.

use hush_config::{AwsSettings, OperatorSettings, VaultSettings};
use hush_tests::env::repo_root;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

const SCHEMA: &str = "deploy/helm/hush/values.schema.json";
const BLESS: &str = "HUSH_BLESS=1 cargo test --workspace --locked --test values_schema";

/// Where each operator field lives in values.yaml: (operator path, values path, empty = unset).
/// Empty strings in values mean "no Vault" / "no AWS" / "none", so those values also accept "".
const IN_VALUES: [(&str, &str, bool); 17] = [
    ("metricsPort", "sidecar.metricsPort", false),
    ("audit", "audit", false),
    (
        "fetchDeadlineSeconds",
        "sidecar.fetchDeadlineSeconds",
        false,
    ),
    (
        "defaultRefreshSeconds",
        "sidecar.defaultRefreshSeconds",
        false,
    ),
    ("minRefreshSeconds", "sidecar.minRefreshSeconds", false),
    ("maxRefreshSeconds", "sidecar.maxRefreshSeconds", false),
    ("maxFileBytes", "sidecar.maxFileBytes", false),
    ("vault.addr", "vault.addr", true),
    ("vault.caPem", "vault.caPem", true),
    ("vault.authMount", "vault.authMount", false),
    ("vault.approleMount", "vault.approleMount", false),
    ("vault.audience", "vault.audience", false),
    ("vault.namespace", "vault.namespace", true),
    ("vault.allowedNamespaces", "vault.allowedNamespaces", false),
    (
        "vault.revokeCertificates",
        "vault.revokeCertificates",
        false,
    ),
    ("aws.region", "aws.region", true),
    ("aws.endpoint", "aws.endpoint", true),
];

/// Operator fields the chart does not offer, each with its reason.
const NOT_IN_VALUES: [(&str, &str); 5] = [
    (
        "allowedRoles",
        "filled in per namespace from the top-level allowedRoles",
    ),
    (
        "allowSignal",
        "follows podSecurity.allowShareProcessNamespace",
    ),
    ("fsGroup", "the pod's fsGroup, filled in by the injector"),
    (
        "vault.tlsSkipVerify",
        "tests only; a chart never turns TLS verification off",
    ),
    (
        "aws.audience",
        "the STS audience is fixed for IRSA-style web identity",
    ),
];

/// The `properties` of `T`'s schema (draft-07, subschemas inlined).
fn properties<T: JsonSchema>() -> Map<String, Value> {
    let generator = SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let schema = generator.into_root_schema_for::<T>().to_value();
    match schema.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        _ => panic!("the schema of {} has no properties", T::schema_name()),
    }
}

/// A field's schema as the chart uses it: the non-null type of an `Option`, no `format` (Helm's
/// validator knows no `uint16`), no `default` (values.yaml holds the chart's defaults).
fn clean(mut field: Value) -> Value {
    let Value::Object(m) = &mut field else {
        panic!("a field schema is not an object: {field}")
    };
    m.remove("format");
    m.remove("default");
    if let Some(Value::Array(types)) = m.get("type") {
        let types: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if let [one] = types.as_slice() {
            m.insert("type".into(), one.clone());
        }
    }
    field
}

/// Every operator field path (`vault.addr`, `metricsPort`, ...) with its generated schema.
fn generated() -> Map<String, Value> {
    let mut all = Map::new();
    for (name, field) in properties::<OperatorSettings>() {
        if name != "vault" && name != "aws" {
            all.insert(name, clean(field));
        }
    }
    for (name, field) in properties::<VaultSettings>() {
        all.insert(format!("vault.{name}"), clean(field));
    }
    for (name, field) in properties::<AwsSettings>() {
        all.insert(format!("aws.{name}"), clean(field));
    }
    all
}

/// The `definitions` block: one schema per operator field the chart offers.
fn definitions() -> Value {
    let all = generated();
    let mut defs = Map::new();
    for (op, _, _) in IN_VALUES {
        let field = all
            .get(op)
            .unwrap_or_else(|| panic!("OperatorSettings has no field {op}; fix IN_VALUES"));
        defs.insert(format!("operator.{op}"), field.clone());
    }
    Value::Object(defs)
}

const MARKER: &str = ",\n  \"definitions\": ";

/// The file with its `definitions` block replaced by `defs` (appended as the last key).
fn splice(text: &str, defs: &Value) -> String {
    let head = match text.find(MARKER) {
        Some(i) => &text[..i],
        None => text
            .trim_end()
            .strip_suffix('}')
            .unwrap_or_else(|| panic!("{SCHEMA} does not end with }}"))
            .trim_end(),
    };
    let pretty = serde_json::to_string_pretty(defs).expect("definitions serialise");
    format!("{head}{MARKER}{}\n}}\n", pretty.replace('\n', "\n  "))
}

#[test]
fn every_operator_field_is_placed_or_excused() {
    let all = generated();
    for name in all.keys() {
        let placed = IN_VALUES.iter().any(|(op, _, _)| op == name);
        let excused = NOT_IN_VALUES.iter().any(|(op, _)| op == name);
        assert!(
            placed != excused,
            "operator field {name}: add it to IN_VALUES (and values.yaml, _helpers.tpl) or to \
             NOT_IN_VALUES with a reason"
        );
    }
}

#[test]
fn values_point_at_the_generated_operator_schema() {
    let path = repo_root().join(SCHEMA);
    let text = std::fs::read_to_string(&path).expect("values.schema.json");
    let schema: Value = serde_json::from_str(&text).expect("values.schema.json is JSON");
    for (op, at, empty_ok) in IN_VALUES {
        let pointer = format!("/properties/{}", at.replace('.', "/properties/"));
        let field = schema
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("{SCHEMA} has no {pointer}"));
        let reference = json!({"$ref": format!("#/definitions/operator.{op}")});
        let expected_any_of = json!([{"const": ""}, reference]);
        let ok = if empty_ok {
            field.get("anyOf") == Some(&expected_any_of)
        } else {
            *field == reference
        };
        assert!(
            ok,
            "{SCHEMA} {pointer} must be {}, not {field}",
            if empty_ok {
                format!("{{\"anyOf\": {expected_any_of}}}")
            } else {
                reference.to_string()
            }
        );
    }
}

#[test]
fn operator_definitions_match_the_rust_types() {
    let path = repo_root().join(SCHEMA);
    let text = std::fs::read_to_string(&path).expect("values.schema.json");
    let want = splice(&text, &definitions());
    serde_json::from_str::<Value>(&want).expect("the spliced schema is JSON");
    if std::env::var("HUSH_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &want).expect("write values.schema.json");
        return;
    }
    assert!(
        text == want,
        "the operator definitions in {SCHEMA} differ from OperatorSettings; run {BLESS}"
    );
}
