//! Issue 12: adding a provider is guided by the compiler, and by this test for what the
//! compiler cannot see. For every provider of `ProviderKind::ALL`: its folder in this crate,
//! its test sources (each with a fuzz target; the flip test and the testkit's own test take
//! every source), its docs page, its example config and its README mention; and its registry
//! facts (file keys the config accepts, secrets redacted, default body limit).

use std::path::{Path, PathBuf};

use providers::testkit;
use providers::{ProviderConfig, ProviderKind};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the providers crate sits in the repository")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_provider_folder_is_registered_and_every_kind_has_one() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut folders: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("mod.rs").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut ids: Vec<String> = ProviderKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    ids.sort();
    assert_eq!(
        folders, ids,
        "provider folders in src/ vs ProviderKind::ALL"
    );
    for kind in ProviderKind::ALL {
        assert_eq!(ProviderKind::from_id(kind.as_str()), Some(kind));
    }
}

#[test]
fn every_test_source_has_a_fuzz_target() {
    let manifest = read("fuzz/Cargo.toml");
    for s in testkit::sources() {
        let file = format!("fuzz/fuzz_targets/{}.rs", s.name);
        let target = read(&file);
        assert!(
            target.contains(&format!("Target::new(\"{}\")", s.name)),
            "{file} fuzzes another source"
        );
        assert!(
            manifest.contains(&format!("name = \"{}\"\npath = \"{}\"", s.name, &file[5..])),
            "fuzz/Cargo.toml has no [[bin]] for {}",
            s.name
        );
        assert!(
            repo().join("fuzz/seeds").join(s.name).is_dir(),
            "fuzz/seeds/{} is missing (see fuzz/src/lib.rs write_seeds)",
            s.name
        );
    }
}

#[test]
fn every_provider_has_docs_an_example_config_and_a_readme_mention() {
    let index = read("docs/providers/README.md");
    let readme = read("README.md");
    assert!(
        readme.contains("docs/providers/"),
        "README.md links the provider docs"
    );
    for kind in ProviderKind::ALL {
        let id = kind.as_str();
        let page = read(&format!("docs/providers/{id}.md"));
        assert!(page.starts_with("# "), "docs/providers/{id}.md has a title");
        assert!(
            index.contains(&format!("({id}.md)")),
            "docs/providers/README.md links {id}.md"
        );
        assert!(
            readme.contains(&format!("`{id}`")),
            "README.md names `{id}`"
        );
        let example = read(&format!("examples/config/{id}.toml"));
        assert!(
            example.contains(&format!("provider = \"{id}\"")),
            "examples/config/{id}.toml configures a {id} source"
        );
    }
}

#[test]
fn file_keys_are_keys_of_the_providers_config() {
    for kind in ProviderKind::ALL {
        for key in kind.file_keys() {
            let table = serde_json::json!({ "provider": kind.as_str(), key: "x" });
            if let Err(e) = serde_json::from_value::<ProviderConfig>(table) {
                assert!(
                    !e.to_string().contains("unknown field"),
                    "{kind:?}: {key} is not a key of its config: {e}"
                );
            }
        }
    }
    // Unknown or missing provider: every provider's keys, as the loader did before.
    let all = providers::file_keys(None);
    assert_eq!(all.len(), 14, "{all:?}");
    assert_eq!(providers::file_keys(Some("bitbucket")), all);
    assert_eq!(providers::file_keys(Some("github")), ["secrets"]);
    assert_eq!(providers::file_keys(Some("gitlab")), ["tokens"]);
    assert_eq!(
        providers::file_keys(Some("wecom")),
        ["token", "encoding_aes_key"]
    );
}

#[test]
fn secret_keys_never_show_in_debug_output() {
    for s in testkit::sources() {
        let printed = format!("{:?}", s.provider_config());
        for key in s.kind.config_keys().secret {
            let values: Vec<String> = match &s.config[*key] {
                serde_json::Value::String(v) => vec![v.clone()],
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            for v in values {
                assert!(
                    !printed.contains(&v),
                    "{}: {key} printed: {printed}",
                    s.name
                );
            }
        }
    }
}

#[test]
fn default_body_limits() {
    for kind in ProviderKind::ALL {
        let expected = match kind {
            ProviderKind::Github => 26_214_400,
            _ => 1_048_576,
        };
        assert_eq!(kind.default_max_body_bytes(1_048_576), expected, "{kind:?}");
        assert_eq!(kind.default_max_body_bytes(50_000_000), 50_000_000);
    }
}

#[test]
fn id_headers_carry_the_event_id() {
    let now = std::time::SystemTime::now();
    for s in testkit::sources() {
        let names = s.kind.id_headers();
        if names.is_empty() {
            continue;
        }
        let r = s.sample(now, "evtregistry1");
        // The first of the names the request carries is the one quoted (GitLab: its
        // Idempotency-Key before its per-delivery X-Gitlab-Event-UUID).
        let sent = names.iter().find_map(|n| {
            r.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
        });
        assert_eq!(sent, Some("evtregistry1"), "{}", s.name);
    }
}

/// `hookgate forget` looks for a content key only where `sets_content_key` says one can be:
/// a provider whose events carry one and that is not marked would leave it in the dedup
/// index, and its redelivery would stay a duplicate after a forget.
#[test]
fn content_keys_come_only_from_the_providers_that_say_so() {
    let now = std::time::SystemTime::now();
    for s in testkit::sources() {
        let r = s.sample(now, "evtregistry2");
        let raw = providers::RawRequest {
            headers: &r.headers,
            query: &r.query,
            body: &r.body,
        };
        match providers::admit(s.build().as_ref(), &raw, now) {
            Ok(providers::Admission::Event { event, .. }) => assert!(
                event.content_key.is_none() || s.kind.sets_content_key(),
                "{}: its events carry a content key; ProviderKind::sets_content_key says no",
                s.name
            ),
            other => panic!("{}: the sample is an event, got {other:?}", s.name),
        }
    }
}
