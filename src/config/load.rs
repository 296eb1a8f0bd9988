//! Reading the file: every section and every source on its own, all problems together.

use super::validate::check_template;
use super::vars::{interpolate, resolve_files, resolve_value};
use super::*;

/// (table, key, variable, default) of the keys whose documented default is
/// `${VARIABLE:-default}` (CONTRACT.md's config block). `dedup.shared` is not one of them:
/// a `REDIS_URL` set for an app's own Redis (as many platforms do) would make deployments
/// that share it drop each other's events as duplicates.
fn env_defaults() -> [(&'static str, &'static str, &'static str, String); 2] {
    [
        (
            "store",
            "path",
            "HOOKGATE_DATA",
            default_store_path().display().to_string(),
        ),
        ("amqp", "url", "AMQP_URL", default_amqp_url().remove(0)),
    ]
}

impl Config {
    /// Reads, interpolates and validates `path`, with the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![format!("cannot read {}: {e}", path.display())]))?;
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::parse(&text, &vars, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses `text` with the variables `vars`; relative `file:` paths resolve against `base`.
    pub fn parse(
        text: &str,
        vars: &HashMap<String, String>,
        base: &Path,
    ) -> Result<Config, ConfigError> {
        let mut root: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError(vec![syntax_error(text, &e)]))?;
        let mut errors = Vec::new();

        // Keys whose documented default reads the environment: left out, they are what the
        // example writes, and where the variable is set, `check` and the start say so.
        let mut from_env = Vec::new();
        for (table, key, var, default) in env_defaults() {
            let Some(t) = root
                .entry(table)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
            else {
                continue;
            };
            if !t.contains_key(key) {
                t.insert(key.into(), format!("${{{var}:-{default}}}").into());
                if vars.get(var).is_some_and(|v| !v.is_empty()) {
                    from_env.push((format!("{table}.{key}"), var));
                }
            }
        }
        let mut missing = BTreeSet::new();
        for (_, v) in root.iter_mut() {
            interpolate(v, vars, &mut missing);
        }
        if !missing.is_empty() {
            let names: Vec<_> = missing.into_iter().collect();
            errors.push(format!(
                "environment variables not set: {}",
                names.join(", ")
            ));
        }

        for key in root.keys() {
            if !["server", "store", "amqp", "sources", "dedup"].contains(&key.as_str()) {
                errors.push(format!(
                    "unknown key `{key}` (expected server, store, amqp, sources, dedup)"
                ));
            }
        }
        if let Some(token) = root
            .get_mut("server")
            .and_then(|a| a.as_table_mut())
            .and_then(|a| a.get_mut("admin_token"))
        {
            resolve_value(token, base, "server.admin_token", &mut errors);
        }
        let mut server: Option<ServerConfig> = section(&mut root, "server", &mut errors);
        // Like `file:` secrets, TLS files are relative to the config file.
        if let Some(tls) = server.as_mut().and_then(|s| s.tls.as_mut()) {
            tls.cert = base.join(&tls.cert);
            tls.key = base.join(&tls.key);
        }
        let store: Option<StoreConfig> = section(&mut root, "store", &mut errors);
        // The URL carries the broker password, so it may come from a file like a secret.
        if let Some(url) = root
            .get_mut("amqp")
            .and_then(|a| a.as_table_mut())
            .and_then(|a| a.get_mut("url"))
        {
            resolve_value(url, base, "amqp.url", &mut errors);
        }
        let mut amqp: Option<AmqpConfig> = section(&mut root, "amqp", &mut errors);
        if let Some(tls) = amqp.as_mut().and_then(|a| a.tls.as_mut()) {
            tls.resolve(base);
        }
        // The Redis URL may carry a password too.
        if let Some(url) = root
            .get_mut("dedup")
            .and_then(|a| a.as_table_mut())
            .and_then(|a| a.get_mut("shared"))
        {
            resolve_value(url, base, "dedup.shared", &mut errors);
        }
        let mut dedup: Option<crate::dedup::DedupConfig> = section(&mut root, "dedup", &mut errors);
        if let Some(d) = dedup.as_mut() {
            d.resolve_paths(base);
        }

        let mut sources = Vec::new();
        let default_body = server
            .as_ref()
            .map_or(default_max_body_bytes(), |s| s.max_body_bytes);
        match root.remove("sources") {
            None => {}
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(s) = parse_source(i, item, default_body, base, &mut errors) {
                        sources.push(s);
                    }
                }
            }
            Some(_) => errors.push("sources: expected an array of tables ([[sources]])".into()),
        }

        match (server, store, amqp, dedup) {
            (Some(server), Some(store), Some(amqp), Some(dedup)) if errors.is_empty() => {
                let config = Config {
                    server,
                    store,
                    amqp,
                    sources,
                    dedup,
                    from_env: from_env
                        .iter()
                        .map(|(key, var)| format!("{key} is not in the file: taken from {var}"))
                        .collect(),
                };
                config
                    .validate()
                    .map_err(|e| with_env_origin(e, &from_env))
                    .map(|()| config)
            }
            _ => Err(with_env_origin(ConfigError(errors), &from_env)),
        }
    }
}

/// `e` with each message about a key the file does not name, but a variable gave, saying so.
fn with_env_origin(mut e: ConfigError, from_env: &[(String, &str)]) -> ConfigError {
    for message in &mut e.0 {
        if let Some((key, var)) = from_env
            .iter()
            .find(|(k, _)| message.starts_with(k.as_str()))
        {
            message.push_str(&format!(" ({key} is not in the file: it came from {var})"));
        }
    }
    e
}

/// Deserializes `[name]` (absent = all defaults), recording an error instead of failing.
fn section<T: DeserializeOwned>(
    root: &mut toml::Table,
    name: &str,
    errors: &mut Vec<String>,
) -> Option<T> {
    let value = root
        .remove(name)
        .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    match typed(name, value) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// Deserializes the table `label`; an error names the key path inside it (`rate_limit.burst`,
/// `queues[1].kind`) and never quotes a value. Where serde cannot follow the path (inside an
/// internally tagged enum such as a provider's keys) the key is found by [`serde_error`].
fn typed<T: DeserializeOwned>(label: &str, value: toml::Value) -> Result<T, String> {
    let keys = value.as_table().cloned().unwrap_or_default();
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().message().to_string();
        if path.is_empty() || path == "." {
            serde_error(label, &message, &keys)
        } else {
            format!("{label}.{path}: {}", redact_values(&message))
        }
    })
}

fn parse_source(
    i: usize,
    item: toml::Value,
    default_body: usize,
    base: &Path,
    errors: &mut Vec<String>,
) -> Option<SourceConfig> {
    let toml::Value::Table(mut table) = item else {
        errors.push(format!("sources[{i}]: expected a table"));
        return None;
    };
    let label = match table.get("name").and_then(|v| v.as_str()) {
        Some(n) => format!("sources[{i}] ({n})"),
        None => format!("sources[{i}]"),
    };
    let before = errors.len();
    resolve_files(&mut table, base, &label, errors);
    let resolved = toml::Value::Table(table.clone()).to_string();

    let mut common = toml::Table::new();
    for key in COMMON_KEYS {
        if let Some(v) = table.remove(key) {
            common.insert(key.to_string(), v);
        }
    }
    let common = match typed::<CommonKeys>(&label, toml::Value::Table(common)) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let ids = || {
        let ids: Vec<&str> = providers::ProviderKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        ids.join(", ")
    };
    let kind = table.remove("provider");
    let provider = match kind
        .as_ref()
        .map(|k| k.as_str().and_then(providers::ProviderKind::from_id))
    {
        None => {
            errors.push(format!("{label}.provider: missing (one of {})", ids()));
            None
        }
        Some(None) => {
            // A provider id is not a secret: named, so a typo is seen.
            let given: String = match kind.as_ref().and_then(|k| k.as_str()) {
                Some(s) => s.chars().take(64).collect(),
                None => "(not a string)".into(),
            };
            errors.push(format!(
                "{label}.provider: unknown provider `{given}`, expected one of {}",
                ids()
            ));
            None
        }
        Some(Some(kind)) => {
            let keys = table.clone();
            let value = toml::Value::Table(table);
            let mut track = serde_path_to_error::Track::new();
            let de = serde_path_to_error::Deserializer::new(value, &mut track);
            match ProviderConfig::deserialize_as(kind, de) {
                Ok(p) => Some(p),
                Err(e) => {
                    let path = track.path().to_string();
                    errors.push(if path.is_empty() || path == "." {
                        serde_error(&label, e.message(), &keys)
                    } else {
                        format!("{label}.{path}: {}", redact_values(e.message()))
                    });
                    None
                }
            }
        }
    };
    // The common keys are checked even when the provider part failed: every problem at once.
    if let Some(common) = &common {
        if !valid_source_name(&common.name) {
            errors.push(format!(
                "{label}.name: must match [a-z0-9][a-z0-9_-]* (it is the URL path segment)"
            ));
        }
        if let Some(Err(e)) = common.routing_key.as_deref().map(check_template) {
            errors.push(format!("{label}.routing_key: {e}"));
        }
    }
    let (common, provider) = (common?, provider?);
    let routing_key = common
        .routing_key
        .unwrap_or_else(|| "{source}.{type}".into());
    // The longest key this template can render: a type is at most MAX_TYPE_BYTES (refused
    // with 400 beyond), so a key past AMQP's 255 bytes is a config error, never a request's.
    let worst = render_routing_key(
        &routing_key,
        &common.name,
        &"t".repeat(MAX_TYPE_BYTES),
        provider.kind().as_str(),
    )
    .len();
    if worst > 255 {
        errors.push(format!(
            "{label}.routing_key: renders up to {worst} bytes with a {MAX_TYPE_BYTES}-byte event type; AMQP allows 255 (shorten the template or the source name)"
        ));
    }
    if let Err(problems) = provider.build() {
        for p in problems {
            errors.push(format!("{label}.{p}"));
        }
    }
    if errors.len() > before {
        return None;
    }
    // The provider's own floor where it has one (GitHub sends up to 25 MB).
    let max_body_bytes = common
        .max_body_bytes
        .unwrap_or(provider.kind().default_max_body_bytes(default_body));
    let fingerprint = {
        let digest = providers::sha256(&[
            b"hookgate source v1\0",
            resolved.as_bytes(),
            &max_body_bytes.to_le_bytes(),
        ]);
        format!("sha256:{}", hex::encode(digest))
    };
    Some(SourceConfig {
        name: common.name,
        allow_ips: common.allow_ips,
        rate_limit: common.rate_limit,
        max_body_bytes,
        routing_key,
        provider,
        fingerprint,
    })
}

/// A TOML syntax error as line and column only: the parser's own message quotes the offending
/// line, which may hold a secret.
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let message = redact_values(e.message());
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML syntax error: {message}"),
    }
}

/// A serde error of the table `label` whose entries were `keys`, without the values it quotes.
/// serde's "invalid type: string \"…\"" names a value but not its key: the key is found by
/// the value, then the value is dropped, so `secrets = "hunter2"` (a string where a list is
/// expected) never prints the secret.
pub fn serde_error(label: &str, message: &str, keys: &toml::Table) -> String {
    let key = keys.iter().find_map(|(k, v)| {
        let quoted = v.as_str().map(|s| format!("string {s:?}"))?;
        message.contains(&quoted).then_some(k)
    });
    match key {
        Some(k) => format!("{label}.{k}: {}", redact_values(message)),
        None => format!("{label}: {}", redact_values(message)),
    }
}

/// Drops the quoted text serde's `Unexpected` puts after `string` (formatted with `{:?}`) and
/// in backticks after `integer`, `floating point`, `boolean` and `character`, whatever the
/// key: any value in a config may be a secret, one written without quotes too.
pub fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let next = [
            "string \"",
            "character '",
            "character `",
            "integer `",
            "floating point `",
            "boolean `",
        ]
        .iter()
        .filter_map(|m| rest.find(m).map(|i| (i, *m)))
        .min();
        let Some((at, marker)) = next else { break };
        let quote = marker.chars().last().unwrap_or('"');
        out.push_str(&rest[..at + marker.len() - 2]);
        // The quoted text is Debug-escaped: it ends at the first quote not after a backslash.
        let body = &rest[at + marker.len()..];
        let mut escaped = false;
        let end = body.char_indices().find_map(|(i, c)| match c {
            _ if escaped => {
                escaped = false;
                None
            }
            '\\' => {
                escaped = true;
                None
            }
            c if c == quote => Some(i + c.len_utf8()),
            _ => None,
        });
        match end {
            Some(end) => rest = &body[end..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}
