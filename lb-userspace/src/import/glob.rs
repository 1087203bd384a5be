//! The file-name patterns of keepalived's `include` (glob(3): `*`, `?`,
//! `[abc]`, `[a-z]`, `[!x]`), expanded on the file system and sorted as
//! glob(3) sorts them. A leading `.` is only matched by a pattern that
//! starts with one, as with glob(3).

use std::path::{Component, Path, PathBuf};

/// Existing files matching `pattern`, sorted; a pattern without wildcards
/// matches itself if it exists.
pub fn expand(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    let components: Vec<Component<'_>> = pattern.components().collect();
    for (i, component) in components.iter().enumerate() {
        let last = i + 1 == components.len();
        let part = component.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for base in &found {
            if !is_pattern(&part) {
                let path = base.join(component.as_os_str());
                if (last && path.is_file()) || (!last && path.is_dir()) {
                    next.push(path);
                }
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| matches(&part, name))
                .collect();
            names.sort();
            for name in names {
                let path = base.join(&name);
                if (last && path.is_file()) || (!last && path.is_dir()) {
                    next.push(path);
                }
            }
        }
        found = next;
    }
    found.retain(|p| !p.as_os_str().is_empty());
    found
}

fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Whether one file name matches one pattern component.
pub fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|skip| match_from(&p[1..], &n[skip..])),
        Some('?') => !n.is_empty() && match_from(&p[1..], &n[1..]),
        Some('[') => match (n.first(), class(&p[1..])) {
            (Some(&c), Some((set, negated, used))) => {
                set.contains(c) != negated && match_from(&p[1 + used..], &n[1..])
            }
            // An unclosed `[` is an ordinary character.
            (Some('['), None) => match_from(&p[1..], &n[1..]),
            _ => false,
        },
        Some(&c) => n.first() == Some(&c) && match_from(&p[1..], &n[1..]),
    }
}

/// A bracket expression after its `[`: the set, whether it is negated and
/// how many characters it used (through its `]`).
fn class(p: &[char]) -> Option<(CharSet, bool, usize)> {
    let mut i = 0;
    let negated = matches!(p.first(), Some('!') | Some('^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((CharSet(ranges), negated, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            ranges.push((p[i], p[i + 2]));
            i += 3;
        } else {
            ranges.push((p[i], p[i]));
            i += 1;
        }
    }
    None
}

struct CharSet(Vec<(char, char)>);

impl CharSet {
    fn contains(&self, c: char) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= c && c <= hi)
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        assert!(matches("*.conf", "a.conf"));
        assert!(!matches("*.conf", "a.conf.bak"));
        assert!(!matches("*.conf", ".a.conf"));
        assert!(matches(".*", ".a"));
        assert!(matches("vs?.conf", "vs1.conf"));
        assert!(!matches("vs?.conf", "vs10.conf"));
        assert!(matches("vs[0-9].conf", "vs7.conf"));
        assert!(!matches("vs[!0-9].conf", "vs7.conf"));
        assert!(matches("vs[!0-9].conf", "vsx.conf"));
        assert!(matches("a[]]b", "a]b"));
        assert!(matches("a[b", "a[b"));
        assert!(matches("*", "anything"));
    }
}
