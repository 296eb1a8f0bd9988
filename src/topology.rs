//! Would a source's events reach any queue? A config whose routing keys match none of the
//! declared bindings is valid, but every event of that source ends as a dead letter: `check`
//! and the start-up log warn about it.
//!
//! A source's routing key is its template with `{source}` and `{provider}` known and `{type}`
//! open (`provider.noun[.verb]`: the provider id, then one or more words). Whether a topic
//! binding can match some such key is a question about two patterns, answered exactly below.

use crate::config::Config;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Lit(String),
    /// `*`: exactly one word.
    One,
    /// `#`: zero or more words.
    Any,
    /// One or more words (the open end of a type).
    Some,
}

fn binding_words(b: &str) -> Vec<Word> {
    b.split('.')
        .map(|w| match w {
            "*" => Word::One,
            "#" => Word::Any,
            w => Word::Lit(w.to_string()),
        })
        .collect()
}

/// The words of a rendered template, `{type}` standing for `provider` + one or more words.
fn key_words(template: &str, source: &str, provider: &str) -> Vec<Word> {
    let rendered = template
        .replace("{source}", source)
        .replace("{provider}", provider)
        .replace("{type}", &format!("{provider}.\u{1}"));
    rendered
        .split('.')
        .map(|w| match w {
            "\u{1}" => Word::Some,
            w => Word::Lit(w.to_string()),
        })
        .collect()
}

/// Whether some word list matches both patterns: reachability in the product of the two
/// patterns read as automata (`#` skips or loops, the others consume one word).
fn intersect(a: &[Word], b: &[Word]) -> bool {
    let expand = |p: &[Word]| -> Vec<Word> {
        p.iter()
            .flat_map(|w| match w {
                Word::Some => vec![Word::One, Word::Any],
                w => vec![w.clone()],
            })
            .collect()
    };
    let (a, b) = (expand(a), expand(b));
    let mut seen = vec![vec![false; b.len() + 1]; a.len() + 1];
    let mut todo = vec![(0, 0)];
    while let Some((i, j)) = todo.pop() {
        if std::mem::replace(&mut seen[i][j], true) {
            continue;
        }
        if (i, j) == (a.len(), b.len()) {
            return true;
        }
        let mut next = Vec::new();
        // `#` may match nothing.
        if a.get(i) == Some(&Word::Any) {
            next.push((i + 1, j));
        }
        if b.get(j) == Some(&Word::Any) {
            next.push((i, j + 1));
        }
        // Both read the same word: `#` stays, the others move on.
        if let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
            let same = match (x, y) {
                (Word::Lit(p), Word::Lit(q)) => p == q,
                _ => true,
            };
            if same {
                let ni = if *x == Word::Any { i } else { i + 1 };
                let nj = if *y == Word::Any { j } else { j + 1 };
                next.push((ni, nj));
            }
        }
        todo.extend(next.into_iter().filter(|&(i, j)| !seen[i][j]));
    }
    false
}

/// One warning per source whose routing keys can match none of `[[amqp.queues]]`'s
/// bindings; one overall when no queue is declared at all (bindings may live elsewhere).
pub fn warnings(config: &Config) -> Vec<String> {
    if config.sources.is_empty() {
        return Vec::new();
    }
    let bindings: Vec<Vec<Word>> = config
        .amqp
        .queues
        .iter()
        .flat_map(|q| q.bindings.iter().map(|b| binding_words(b)))
        .collect();
    if bindings.is_empty() {
        return vec![format!(
            "no [[amqp.queues]] with bindings are declared: unless queues are bound to exchange `{}` outside hookgate, every event is unroutable and ends as a dead letter after amqp.max_attempts tries",
            config.amqp.exchange
        )];
    }
    config
        .sources
        .iter()
        .filter(|s| {
            let key = key_words(&s.routing_key, &s.name, s.provider.kind().as_str());
            !bindings.iter().any(|b| intersect(b, &key))
        })
        .map(|s| {
            format!(
                "source `{}`: routing key `{}` matches none of the declared queue bindings; its events will be unroutable and end as dead letters",
                s.name, s.routing_key
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn can(binding: &str, template: &str) -> bool {
        intersect(
            &binding_words(binding),
            &key_words(template, "gh", "github"),
        )
    }

    #[test]
    fn bindings_against_open_types() {
        assert!(can("#", "{source}.{type}"));
        assert!(can("gh.#", "{source}.{type}"));
        assert!(can("*.github.#", "{source}.{type}"));
        assert!(can("gh.github.push", "{source}.{type}"));
        assert!(can("gh.github.*", "{source}.{type}"));
        assert!(can("gh.github.*.opened", "{source}.{type}"));
        assert!(can("#.opened", "{source}.{type}"));
        assert!(can("*.*.*", "{source}.{type}"));
        assert!(
            !can("gh.github", "{source}.{type}"),
            "a type has at least two words"
        );
        assert!(!can("*.alipay.#", "{source}.{type}"));
        assert!(!can("other.#", "{source}.{type}"));
        assert!(!can("*.*", "{source}.{type}"));
        assert!(can("github.pull_request.#", "{type}"));
        assert!(!can("gh.#", "{type}"));
        assert!(can("x.github.#", "x.{provider}.{type}"));
    }
}
