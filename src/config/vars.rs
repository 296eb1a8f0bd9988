//! `${VAR}` interpolation and `file:` secrets.

use super::*;

/// Replaces `${VAR}` and `${VAR:-default}` in every string; `$$` is a literal `$`.
pub(super) fn interpolate(
    v: &mut toml::Value,
    vars: &HashMap<String, String>,
    missing: &mut BTreeSet<String>,
) {
    match v {
        toml::Value::String(s) if s.contains('$') => *s = interpolate_str(s, vars, missing),
        toml::Value::Array(items) => items.iter_mut().for_each(|i| interpolate(i, vars, missing)),
        toml::Value::Table(t) => t
            .iter_mut()
            .for_each(|(_, i)| interpolate(i, vars, missing)),
        _ => {}
    }
}

/// Pure: the interpolated string; unset variables without a default go to `missing`.
pub fn interpolate_str(
    s: &str,
    vars: &HashMap<String, String>,
    missing: &mut BTreeSet<String>,
) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            match (vars.get(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    missing.insert(name.to_string());
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Replaces `file:PATH` values of the provider's secret and key keys (the providers crate
/// says which) with the file's contents.
pub(super) fn resolve_files(
    table: &mut toml::Table,
    base: &Path,
    label: &str,
    errors: &mut Vec<String>,
) {
    for key in providers::file_keys(table.get("provider").and_then(toml::Value::as_str)) {
        if let Some(v) = table.get_mut(key) {
            resolve_value(v, base, &format!("{label}.{key}"), errors);
        }
    }
}

pub(super) fn resolve_value(v: &mut toml::Value, base: &Path, key: &str, errors: &mut Vec<String>) {
    match v {
        toml::Value::String(s) => {
            if let Some(path) = s.strip_prefix("file:") {
                let path = base.join(path);
                match read_secret_file(&path) {
                    // A raw secret file usually ends with a newline that is not part of the key.
                    Ok(content) => *s = content.trim_end_matches(['\r', '\n']).to_string(),
                    Err(e) => errors.push(format!("{key}: cannot read {}: {e}", path.display())),
                }
            }
        }
        toml::Value::Array(items) => items
            .iter_mut()
            .for_each(|i| resolve_value(i, base, key, errors)),
        toml::Value::Table(t) => t
            .iter_mut()
            .for_each(|(k, i)| resolve_value(i, base, &format!("{key}.{k}"), errors)),
        _ => {}
    }
}

/// Keys and certificates are a few KiB; a bound keeps `file:/dev/zero` from hanging start-up.
pub(super) const MAX_SECRET_FILE_BYTES: u64 = 1 << 20;

fn read_secret_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    let n = std::fs::File::open(path)?
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if n as u64 > MAX_SECRET_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_SECRET_FILE_BYTES} bytes"
        )));
    }
    Ok(text)
}
