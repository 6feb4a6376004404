//! The JSON Schema of the configuration file (`deploy/esprit.schema.json`,
//! for editors) and the configuration reference made from it
//! (`docs/config-reference.md`), both generated from the Rust types serde
//! reads the YAML into: the dataplane's `config::Config` with the control
//! plane's `ike` section merged in. The tests fail when a committed file is
//! not what the types give today; `ESPRIT_BLESS=1 cargo test -p
//! esprit-dataplane --test config_schema` rewrites both.
//! The example configuration (`deploy/esprit.yaml`) must validate against
//! the schema's structure (every key it uses is known to the schema).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The whole file's schema: the dataplane's, its `ike` property replaced by
/// the control plane's schema, the definitions of both in one `$defs`.
fn schema() -> Value {
    let mut root =
        serde_json::to_value(schemars::schema_for!(esprit_dataplane::config::Config)).unwrap();
    let mut ike = serde_json::to_value(esprit_controlplane::config::ike_schema()).unwrap();
    let ike_defs = ike
        .as_object_mut()
        .unwrap()
        .remove("$defs")
        .unwrap_or_else(|| json!({}));
    let defs = root
        .as_object_mut()
        .unwrap()
        .entry("$defs")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .unwrap();
    for (name, def) in ike_defs.as_object().unwrap() {
        if let Some(old) = defs.get(name) {
            assert_eq!(
                old, def,
                "the planes define two different types named {name}: rename one"
            );
        }
        defs.insert(name.clone(), def.clone());
    }
    let ike = ike.as_object_mut().unwrap();
    for k in ["$schema", "title"] {
        ike.remove(k);
    }
    defs.insert("Ike".into(), Value::Object(ike.clone()));
    let props = root["properties"].as_object_mut().unwrap();
    props.insert(
        "ike".into(),
        json!({
            "description": "esprit-ike's section (the IKEv2 control plane); esprit-dataplane ignores it.",
            "anyOf": [{ "$ref": "#/$defs/Ike" }, { "type": "null" }],
            "default": null
        }),
    );
    let root = root.as_object_mut().unwrap();
    root.insert(
        "title".into(),
        json!("esprit configuration (esprit-dataplane and esprit-ike)"),
    );
    root.insert(
        "description".into(),
        json!("One YAML file for both planes: `dataplane` and `metrics` for esprit-dataplane, `ike` for esprit-ike. Generated from the Rust types (dataplane/tests/config_schema.rs); docs/config-reference.md is made from it."),
    );
    Value::Object(root.clone())
}

fn deref<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => deref(root, &root["$defs"][r.trim_start_matches("#/$defs/")]),
        None => s,
    }
}

/// The schema of `s` without its `null` alternative (an `Option`), and
/// whether there was one.
fn strip_null<'a>(root: &'a Value, s: &'a Value) -> (&'a Value, bool) {
    let s = deref(root, s);
    if let Some(alts) = s.get("anyOf").and_then(Value::as_array) {
        let non_null: Vec<&Value> = alts
            .iter()
            .filter(|a| a.get("type") != Some(&json!("null")))
            .collect();
        if non_null.len() == 1 && alts.len() == 2 {
            return (deref(root, non_null[0]), true);
        }
    }
    if let Some(types) = s.get("type").and_then(Value::as_array) {
        if types.contains(&json!("null")) {
            return (s, true);
        }
    }
    (s, false)
}

/// A short type name for the reference's table.
fn type_name(root: &Value, s: &Value) -> String {
    let (s, nullable) = strip_null(root, s);
    // `"type": ["array", "null"]`: name the non-null type.
    if let Some(ts) = s.get("type").and_then(Value::as_array) {
        let non_null: Vec<&Value> = ts.iter().filter(|t| *t != "null").collect();
        if non_null.len() == 1 {
            let mut one = s.clone();
            one["type"] = non_null[0].clone();
            let base = type_name(root, &one);
            return if nullable {
                format!("{base} or null")
            } else {
                base
            };
        }
    }
    let base = if let Some(values) = s.get("enum").and_then(Value::as_array) {
        values
            .iter()
            .map(|v| {
                format!(
                    "`{}`",
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(" \\| ")
    } else if let Some(c) = s.get("const") {
        format!(
            "`{}`",
            c.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| c.to_string())
        )
    } else if let Some(alts) = s
        .get("oneOf")
        .or_else(|| s.get("anyOf"))
        .and_then(Value::as_array)
    {
        alts.iter()
            .map(|a| type_name(root, a))
            .collect::<Vec<_>>()
            .join(" \\| ")
    } else {
        match s.get("type") {
            Some(Value::String(t)) if t == "array" => format!(
                "list of {}",
                s.get("items")
                    .map(|i| type_name(root, i))
                    .unwrap_or_else(|| "any".into())
            ),
            Some(Value::String(t)) if t == "object" && s.get("properties").is_none() => {
                match s.get("additionalProperties") {
                    Some(v) if v.is_object() => format!("map of name to {}", type_name(root, v)),
                    _ => "object".into(),
                }
            }
            Some(Value::String(t)) if t == "integer" => {
                let f = s.get("format").and_then(Value::as_str).unwrap_or("");
                if f.is_empty() {
                    "integer".into()
                } else {
                    format!("integer ({f})")
                }
            }
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter(|t| *t != "null")
                .map(|t| t.as_str().unwrap_or("?").to_string())
                .collect::<Vec<_>>()
                .join(" \\| "),
            _ => "any".into(),
        }
    };
    if nullable {
        format!("{base} or null")
    } else {
        base
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// One table row per key, depth first: `dataplane.ports.outside.device`;
/// `[]` for the items of a list, `<name>` for the entries of a map.
fn rows(
    root: &Value,
    s: &Value,
    path: &str,
    required: bool,
    seen: &mut Vec<String>,
    out: &mut Vec<String>,
) {
    let raw = s;
    let (inner, _) = strip_null(root, s);
    if !path.is_empty() {
        let desc = raw
            .get("description")
            .or_else(|| inner.get("description"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let default = raw
            .get("default")
            .map(|d| format!("`{d}`"))
            .unwrap_or_default();
        out.push(format!(
            "| `{path}` | {} | {} | {} | {} |",
            type_name(root, raw),
            if required { "yes" } else { "" },
            default,
            one_line(desc)
        ));
    }
    // Recursion guard for recursive types (none today).
    let key = raw
        .get("$ref")
        .or_else(|| s.get("$ref"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !key.is_empty() {
        if seen.contains(&key) {
            return;
        }
        seen.push(key.clone());
    }
    if let Some(props) = inner.get("properties").and_then(Value::as_object) {
        let req: BTreeSet<&str> = inner
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (k, v) in props {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            rows(root, v, &p, req.contains(k.as_str()), seen, out);
        }
    } else if inner.get("type") == Some(&json!("array")) {
        if let Some(items) = inner.get("items") {
            let (it, _) = strip_null(root, items);
            if it.get("properties").is_some() {
                rows_children(root, items, &format!("{path}[]"), seen, out);
            }
        }
    } else if let Some(v) = inner.get("additionalProperties").filter(|v| v.is_object()) {
        let (it, _) = strip_null(root, v);
        if it.get("properties").is_some() {
            rows_children(root, v, &format!("{path}.<name>"), seen, out);
        }
    }
    if !key.is_empty() {
        seen.pop();
    }
}

/// The keys of the object `s` under `path`, without a row for `path` itself.
fn rows_children(
    root: &Value,
    s: &Value,
    path: &str,
    seen: &mut Vec<String>,
    out: &mut Vec<String>,
) {
    let (inner, _) = strip_null(root, s);
    let req: BTreeSet<&str> = inner
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (k, v) in inner["properties"].as_object().unwrap() {
        rows(
            root,
            v,
            &format!("{path}.{k}"),
            req.contains(k.as_str()),
            seen,
            out,
        );
    }
}

fn reference(schema: &Value) -> String {
    let mut out = vec![
        "# Configuration reference".to_string(),
        String::new(),
        "<!-- Generated from deploy/esprit.schema.json by dataplane/tests/config_schema.rs: do not edit;".into(),
        "     `ESPRIT_BLESS=1 cargo test -p esprit-dataplane --test config_schema` rewrites it. -->".into(),
        String::new(),
        "One YAML file configures both planes (`esprit-dataplane --config FILE`, `esprit-ike --config FILE`;".into(),
        "`--check` validates it). Editors that speak JSON Schema can check it with".into(),
        "`deploy/esprit.schema.json` (e.g. a `# yaml-language-server: $schema=...` line). An example: `deploy/esprit.yaml`.".into(),
        String::new(),
        "Keys are written as paths: `[]` stands for each item of a list, `<name>` for each entry of a map.".into(),
        "Required keys are required when their parent is present.".into(),
    ];
    for (section, title) in [
        ("dataplane", "esprit-dataplane"),
        ("metrics", "esprit-dataplane's metrics"),
        ("ike", "esprit-ike"),
    ] {
        out.push(String::new());
        out.push(format!("## `{section}`: {title}"));
        out.push(String::new());
        out.push("| key | type | required | default | description |".into());
        out.push("| --- | --- | --- | --- | --- |".into());
        let req: BTreeSet<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        rows(
            schema,
            &schema["properties"][section],
            section,
            req.contains(section),
            &mut Vec::new(),
            &mut out,
        );
    }
    out.push(String::new());
    out.join("\n")
}

/// Compares `path` with `want`; rewrites it under ESPRIT_BLESS=1.
fn check_fresh(path: &Path, want: &str) {
    if std::env::var_os("ESPRIT_BLESS").is_some() {
        std::fs::write(path, want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "{} is not what the Rust types give: run `ESPRIT_BLESS=1 cargo test -p esprit-dataplane --test config_schema` and commit it",
        path.display()
    );
}

fn schema_text() -> String {
    serde_json::to_string_pretty(&schema()).unwrap() + "\n"
}

#[test]
fn the_committed_json_schema_is_fresh() {
    check_fresh(&repo().join("deploy/esprit.schema.json"), &schema_text());
}

#[test]
fn the_committed_config_reference_is_fresh() {
    check_fresh(
        &repo().join("docs/config-reference.md"),
        &reference(&schema()),
    );
}

#[test]
fn the_schema_covers_both_planes() {
    let s = schema();
    let text = reference(&s);
    // A key of each plane, with its description from the doc comments.
    for key in [
        "`dataplane.ports.outside.device`",
        "`dataplane.static_sas[].spi`",
        "`ike.connections.<name>.child.esp_proposals`",
        "`ike.listen`",
        "`metrics.listen`",
    ] {
        assert!(text.contains(key), "{key} missing from the reference");
    }
    assert_eq!(
        s["additionalProperties"],
        json!(false),
        "unknown top-level keys must be refused, as serde does"
    );
}

/// Every key the example configuration uses is one the schema knows, so an
/// editor would not flag the shipped example (a small structural walk; the
/// daemons' --check is the full validation, run by scripts/check-deploy).
#[test]
fn the_example_configuration_uses_only_known_keys() {
    let s = schema();
    let example: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("deploy/esprit.yaml")).unwrap())
            .unwrap();
    let example: Value = serde_json::to_value(example).unwrap();
    let mut unknown = Vec::new();
    walk_keys(&s, &s, &example, "", &mut unknown);
    assert!(
        unknown.is_empty(),
        "keys of deploy/esprit.yaml the schema does not know: {unknown:?}"
    );
    // And a wrong key is caught by the same walk (the check can fail).
    let mut bad = example.clone();
    bad["dataplane"]
        .as_object_mut()
        .unwrap()
        .insert("no_such_key".into(), json!(1));
    let mut unknown = Vec::new();
    walk_keys(&s, &s, &bad, "", &mut unknown);
    assert_eq!(unknown, vec!["dataplane.no_such_key".to_string()]);
}

fn walk_keys(root: &Value, s: &Value, v: &Value, path: &str, unknown: &mut Vec<String>) {
    let (s, _) = strip_null(root, s);
    // Untagged alternatives: the value may match any of them.
    if let Some(alts) = s
        .get("anyOf")
        .or_else(|| s.get("oneOf"))
        .and_then(Value::as_array)
    {
        let mut best: Option<Vec<String>> = None;
        for a in alts {
            let mut u = Vec::new();
            walk_keys(root, a, v, path, &mut u);
            if best.as_ref().is_none_or(|b| u.len() < b.len()) {
                best = Some(u);
            }
        }
        unknown.extend(best.unwrap_or_default());
        return;
    }
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let extra = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (props.and_then(|p: &Map<String, Value>| p.get(k)), extra) {
                    (Some(ks), _) => walk_keys(root, ks, x, &p, unknown),
                    (None, Some(es)) => walk_keys(root, es, x, &p, unknown),
                    (None, None) if props.is_some() => unknown.push(p),
                    _ => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, x) in items.iter().enumerate() {
                    walk_keys(root, is, x, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}
