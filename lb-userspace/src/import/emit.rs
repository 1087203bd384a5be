//! The converted config as TOML text: tables in lb's order, each key with
//! a comment naming the keepalived line it came from, so a user can hold
//! the two files side by side.

use std::path::PathBuf;

use toml::Value;

use super::Src;

/// One `[table]` or `[[table]]` and its keys.
#[derive(Clone, Debug, Default)]
pub struct Section {
    /// `[agent]`, `[[virtual_server]]`, ...
    pub header: String,
    /// Comment lines written above the header (without `# `).
    pub comments: Vec<String>,
    /// The keepalived statement it came from, named with `at` above the
    /// header.
    pub title: Option<String>,
    /// Where the block started, named in a comment above the header.
    pub at: Option<Src>,
    pub entries: Vec<Entry>,
    /// Indented under the previous section (real servers, checks).
    pub nested: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    /// The line the value came from; `None` for a value lb import chose.
    pub at: Option<Src>,
    /// Said after the location (`default of keepalived`, ...).
    pub comment: Option<String>,
    /// Written instead of `value` when set: TOML text lb import composed
    /// (an inline table in lb's key order).
    pub raw: Option<String>,
}

impl Entry {
    pub fn new(key: &str, value: impl Into<Value>, at: Option<Src>) -> Self {
        Self {
            key: key.to_owned(),
            value: value.into(),
            at,
            comment: None,
            raw: None,
        }
    }

    /// An entry whose value is TOML text already.
    pub fn raw(key: &str, text: String, at: Option<Src>) -> Self {
        Self {
            raw: Some(text),
            ..Self::new(key, Value::Boolean(false), at)
        }
    }

    pub fn note(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }
}

impl Section {
    pub fn new(header: &str, at: Option<Src>) -> Self {
        Self {
            header: header.to_owned(),
            at,
            ..Self::default()
        }
    }

    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }
}

/// Renders the sections; `files` names the sources in comments.
pub fn render(preamble: &[String], sections: &[Section], files: &[PathBuf]) -> String {
    let mut out = String::new();
    for line in preamble {
        comment_line(&mut out, "", line);
    }
    for section in sections {
        let indent = if section.nested { "  " } else { "" };
        out.push('\n');
        for line in &section.comments {
            comment_line(&mut out, indent, line);
        }
        if let Some(at) = section.at {
            let from = match &section.title {
                Some(t) => format!("from {}: {t}", place(files, at)),
                None => format!("from {}", place(files, at)),
            };
            comment_line(&mut out, indent, &from);
        }
        out.push_str(indent);
        out.push_str(&section.header);
        out.push('\n');
        for entry in &section.entries {
            out.push_str(indent);
            out.push_str(&key(&entry.key));
            out.push_str(" = ");
            let mut said = Vec::new();
            if let Some(at) = entry.at {
                said.push(place(files, at));
            }
            if let Some(c) = &entry.comment {
                said.push(c.clone());
            }
            let comment = if said.is_empty() {
                String::new()
            } else {
                format!("  # {}", said.join(": ").replace('\n', " "))
            };
            let text = match &entry.raw {
                Some(text) => text.clone(),
                None => value(&entry.value),
            };
            match (&entry.value, entry.raw.is_none() && text.len() > WIDTH) {
                (Value::Array(items), true) => wrapped(&mut out, indent, items, &comment),
                _ => {
                    out.push_str(&text);
                    out.push_str(&comment);
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// Longer arrays are written over several lines.
const WIDTH: usize = 72;

/// `[  # comment`, the items a line's width at a time, `]`.
fn wrapped(out: &mut String, indent: &str, items: &[Value], comment: &str) {
    out.push('[');
    out.push_str(comment);
    out.push('\n');
    let mut line = String::new();
    for item in items {
        let text = value(item);
        if !line.is_empty() && line.len() + text.len() + 2 > WIDTH {
            out.push_str(&format!("{indent}  {}\n", line.trim_end()));
            line.clear();
        }
        line.push_str(&text);
        line.push_str(", ");
    }
    if !line.is_empty() {
        out.push_str(&format!("{indent}  {}\n", line.trim_end()));
    }
    out.push_str(indent);
    out.push_str("]\n");
}

fn comment_line(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        out.push_str(indent);
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
}

/// `line 12` in the file given, `conf.d/x.conf:12` in an included one.
fn place(files: &[PathBuf], at: Src) -> String {
    if at.file == 0 {
        return format!("line {}", at.line);
    }
    let name = files
        .get(at.file)
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "?".into());
    format!("{name}:{}", at.line)
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        value(&Value::String(k.to_owned()))
    }
}

/// A value on one line: tables inline, arrays on one line.
pub fn value(v: &Value) -> String {
    match v {
        Value::Table(t) => {
            let inner: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), value(v)))
                .collect();
            if inner.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", inner.join(", "))
            }
        }
        Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(value).collect();
            format!("[{}]", inner.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_parsable_toml_with_sources() {
        let mut vs = Section::new("[[virtual_server]]", Some(Src { file: 0, line: 3 }));
        vs.push(Entry::new(
            "name",
            "10.0.0.1:80 \"q\"",
            Some(Src { file: 0, line: 3 }),
        ));
        let mut check = toml::Table::new();
        check.insert("kind".into(), "tcp".into());
        check.insert("port".into(), 8080.into());
        vs.push(Entry::new("health_check", check, None).note("chosen"));
        vs.push(Entry::new(
            "list",
            Value::Array(vec!["a".into(), "b\\c".into()]),
            None,
        ));
        let long: Vec<Value> = (200..300).map(Value::from).collect();
        vs.push(Entry::new("codes", Value::Array(long), None));
        let text = render(&["head".into()], &[vs], &["k.conf".into()]);
        assert!(text.lines().all(|l| l.len() < 100), "{text}");
        assert!(text.starts_with("# head\n\n# from line 3\n[[virtual_server]]\n"));
        assert!(text.contains("  # line 3\n"), "{text}");
        assert!(text.contains("# chosen"), "{text}");
        let parsed: toml::Table = text.parse().unwrap();
        let vs = &parsed["virtual_server"][0];
        assert_eq!(vs["name"].as_str(), Some("10.0.0.1:80 \"q\""));
        assert_eq!(vs["health_check"]["port"].as_integer(), Some(8080));
        assert_eq!(vs["list"][1].as_str(), Some("b\\c"));
        assert_eq!(vs["codes"].as_array().unwrap().len(), 100);
    }
}
