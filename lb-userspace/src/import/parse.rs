//! keepalived.conf files to a tree of statements: `include` expansion
//! (a glob relative to the including file, as keepalived does),
//! parameters (`$NAME=value` defines, `$NAME` / `${NAME}` in later lines,
//! in included files too, is replaced) and blocks.
//!
//! A statement is a keyword, its values (the words up to the end of the
//! line, a `{` or a `}`) and, when a `{` follows, a block of statements.
//! Several statements may share a line (`real_server 10.0.0.1 80 { weight
//! 2 }`); a `{` alone on the next line still opens the previous
//! statement's block. Every statement keeps its file and line, and a flag
//! the converter sets when it has dealt with it, so that a statement no
//! one dealt with is reported rather than dropped.

use std::{
    cell::Cell,
    collections::HashMap,
    path::{Path, PathBuf},
};

use super::{
    glob::expand,
    lexer::{lex, Lexed, Token},
    ImportError, Note, NoteKind, Src,
};

/// Includes nested deeper than this are a loop (keepalived stops too).
const MAX_INCLUDE_DEPTH: usize = 32;

#[derive(Debug)]
pub struct Node {
    pub keyword: String,
    pub values: Vec<String>,
    /// `Some` when a `{ ... }` block follows.
    pub block: Option<Vec<Node>>,
    pub at: Src,
    /// The `}` closing the block, if any.
    pub end: Option<Src>,
    handled: Cell<bool>,
}

impl Node {
    /// The statement as written (keyword and values), for messages.
    pub fn text(&self) -> String {
        let mut s = self.keyword.clone();
        for v in &self.values {
            s.push(' ');
            if v.contains(char::is_whitespace) || v.is_empty() {
                s.push('"');
                s.push_str(v);
                s.push('"');
            } else {
                s.push_str(v);
            }
        }
        if self.block.is_some() {
            s.push_str(" { ... }");
        }
        s
    }

    pub fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// Marks this statement (not its block) as dealt with.
    pub fn done(&self) {
        self.handled.set(true);
    }

    /// Marks this statement and everything in its block as dealt with.
    pub fn done_all(&self) {
        self.done();
        for c in self.children() {
            c.done_all();
        }
    }

    pub fn is_done(&self) -> bool {
        self.handled.get()
    }

    /// The last line of the statement in its own file (its block's `}`).
    pub fn last_line(&self) -> u32 {
        match self.end {
            Some(end) if end.file == self.at.file && end.line > self.at.line => end.line,
            _ => self.at.line,
        }
    }
}

/// A parsed file and what was read for it.
pub struct Parsed {
    pub nodes: Vec<Node>,
    /// Every file read, the one given first; `Src::file` indexes this.
    pub files: Vec<PathBuf>,
    /// Include patterns that matched nothing, and the like.
    pub notes: Vec<Note>,
    /// The `include` lines that were read.
    pub includes: Vec<Src>,
}

/// Reads `path` and every file it includes, and builds the tree.
pub fn parse_file(path: &Path) -> Result<Parsed, ImportError> {
    let mut reader = Reader {
        files: Vec::new(),
        notes: Vec::new(),
        includes: Vec::new(),
        defs: HashMap::new(),
    };
    let tokens = reader.read(path, 0, None)?;
    let nodes = build(&tokens, &reader.files)?;
    Ok(Parsed {
        nodes,
        files: reader.files,
        notes: reader.notes,
        includes: reader.includes,
    })
}

struct Reader {
    files: Vec<PathBuf>,
    notes: Vec<Note>,
    includes: Vec<Src>,
    /// keepalived's `$NAME=value` definitions seen so far, in file order.
    defs: HashMap<String, String>,
}

/// A token with its file.
pub(super) struct Located {
    token: Token,
    at: Src,
}

impl Reader {
    fn read(
        &mut self,
        path: &Path,
        depth: usize,
        from: Option<Src>,
    ) -> Result<Vec<Located>, ImportError> {
        let text = std::fs::read_to_string(path).map_err(|e| ImportError::Read {
            path: path.to_owned(),
            from: from.map(|s| self.place(s)),
            error: e,
        })?;
        let file = self.files.len();
        self.files.push(path.to_owned());
        let lexed = lex(&text).map_err(|e| ImportError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut out = Vec::with_capacity(lexed.len());
        let mut i = 0;
        while i < lexed.len() {
            let starts_line = i == 0 || lexed[i - 1].token == Token::LineEnd;
            match (&lexed[i].token, starts_line) {
                (
                    Token::Word {
                        text,
                        quoted: false,
                    },
                    true,
                ) if text == "include" => {
                    let at = Src {
                        file,
                        line: lexed[i].line,
                    };
                    let end = line_end(&lexed, i);
                    let args: Vec<String> = lexed[i + 1..end].iter().filter_map(word).collect();
                    self.include(dir, &args, at, depth, &mut out)?;
                    i = end + 1;
                }
                (
                    Token::Word {
                        text,
                        quoted: false,
                    },
                    true,
                ) if definition(text).is_some() => {
                    let end = line_end(&lexed, i);
                    let (name, first) = definition(text).expect("matched");
                    let mut value = first.to_owned();
                    for w in lexed[i + 1..end].iter().filter_map(word) {
                        value.push(' ');
                        value.push_str(&w);
                    }
                    self.defs.insert(name.to_owned(), value.trim().to_owned());
                    // Converted: it takes effect in the lines after it.
                    self.includes.push(Src {
                        file,
                        line: lexed[i].line,
                    });
                    i = end + 1;
                }
                (token, _) => {
                    let at = Src {
                        file,
                        line: lexed[i].line,
                    };
                    self.push_substituted(token, at, &mut out);
                    i += 1;
                }
            }
        }
        Ok(out)
    }

    /// A token with `$NAME` / `${NAME}` replaced. As keepalived's
    /// substitution is textual, an unquoted word whose value holds spaces
    /// or braces becomes several tokens.
    fn push_substituted(&self, token: &Token, at: Src, out: &mut Vec<Located>) {
        let Token::Word { text, quoted } = token else {
            out.push(Located {
                token: token.clone(),
                at,
            });
            return;
        };
        // A value may use other parameters; a bound keeps a loop finite.
        let mut replaced = substitute(text, &self.defs);
        for _ in 0..8 {
            let again = substitute(&replaced, &self.defs);
            if again == replaced {
                break;
            }
            replaced = again;
        }
        if *quoted || replaced == *text {
            out.push(Located {
                token: Token::Word {
                    text: replaced,
                    quoted: *quoted,
                },
                at,
            });
            return;
        }
        let tokens = lex(&replaced).unwrap_or_default();
        for l in tokens.into_iter().filter(|l| l.token != Token::LineEnd) {
            out.push(Located { token: l.token, at });
        }
    }

    fn include(
        &mut self,
        dir: &Path,
        args: &[String],
        at: Src,
        depth: usize,
        out: &mut Vec<Located>,
    ) -> Result<(), ImportError> {
        let Some(pattern) = args.first() else {
            self.note(at, "include", "include without a file: nothing read");
            return Ok(());
        };
        if args.len() > 1 {
            self.note(
                at,
                &format!("include {}", args.join(" ")),
                "one file pattern per include: only the first was read",
            );
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(ImportError::IncludeLoop { at: self.place(at) });
        }
        let pattern = Path::new(pattern);
        let full = if pattern.is_absolute() {
            pattern.to_owned()
        } else {
            dir.join(pattern)
        };
        let matched = expand(&full);
        if !matched.is_empty() {
            self.includes.push(at);
        }
        if matched.is_empty() {
            self.note(
                at,
                &format!("include {}", pattern.display()),
                &format!(
                    "no file matches {} (keepalived only warns): nothing read",
                    full.display()
                ),
            );
        }
        for file in matched {
            out.extend(self.read(&file, depth + 1, Some(at))?);
        }
        Ok(())
    }

    fn note(&mut self, at: Src, what: &str, reason: &str) {
        self.notes.push(Note {
            at,
            last_line: at.line,
            what: what.to_owned(),
            kind: NoteKind::NotConverted,
            reason: reason.to_owned(),
        });
    }

    fn place(&self, at: Src) -> String {
        format!("{}:{}", self.files[at.file].display(), at.line)
    }
}

/// `$NAME=value` (the first word of a line): the name and the value's
/// start.
fn definition(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.strip_prefix('$')?.split_once('=')?;
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some((name, value))
}

/// `$NAME` and `${NAME}` replaced by their definitions; others kept.
fn substitute(text: &str, defs: &HashMap<String, String>) -> String {
    if defs.is_empty() || !text.contains('$') {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, used) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        match defs.get(name) {
            Some(value) if !name.is_empty() => {
                out.push_str(value);
                rest = &after[used..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn line_end(lexed: &[Lexed], from: usize) -> usize {
    (from..lexed.len())
        .find(|&j| lexed[j].token == Token::LineEnd)
        .unwrap_or(lexed.len())
}

fn word(l: &Lexed) -> Option<String> {
    match &l.token {
        Token::Word { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// Statements from tokens; braces must balance.
fn build(tokens: &[Located], files: &[PathBuf]) -> Result<Vec<Node>, ImportError> {
    let mut pos = 0;
    let (nodes, _) = block(tokens, &mut pos, files, None)?;
    Ok(nodes)
}

fn place(files: &[PathBuf], at: Src) -> String {
    format!("{}:{}", files[at.file].display(), at.line)
}

/// Statements up to the `}` that closes `opened` (or the end of input when
/// `opened` is `None`), and where that `}` is.
fn block(
    tokens: &[Located],
    pos: &mut usize,
    files: &[PathBuf],
    opened: Option<Src>,
) -> Result<(Vec<Node>, Option<Src>), ImportError> {
    let mut nodes: Vec<Node> = Vec::new();
    // The last statement, while a `{` may still open its block (until
    // another statement starts).
    let mut can_open = false;
    while *pos < tokens.len() {
        let Located { token, at } = &tokens[*pos];
        *pos += 1;
        match token {
            Token::LineEnd => {}
            Token::Close => {
                return match opened {
                    Some(_) => Ok((nodes, Some(*at))),
                    None => Err(ImportError::Syntax {
                        path: files[at.file].clone(),
                        message: format!("line {}: `}}` closes no block: remove it", at.line),
                    }),
                };
            }
            Token::Open => {
                let (inner, end) = block(tokens, pos, files, Some(*at))?;
                match nodes.last_mut() {
                    Some(last) if can_open => {
                        last.block = Some(inner);
                        last.end = end;
                    }
                    _ => {
                        return Err(ImportError::Syntax {
                            path: files[at.file].clone(),
                            message: format!(
                                "line {}: `{{` opens a block with no keyword before it",
                                at.line
                            ),
                        })
                    }
                }
                can_open = false;
            }
            Token::Word { text, .. } => {
                let mut values = Vec::new();
                while let Some(Located {
                    token: Token::Word { text, .. },
                    ..
                }) = tokens.get(*pos)
                {
                    values.push(text.clone());
                    *pos += 1;
                }
                nodes.push(Node {
                    keyword: text.clone(),
                    values,
                    block: None,
                    at: *at,
                    end: None,
                    handled: Cell::new(false),
                });
                can_open = true;
            }
        }
    }
    match opened {
        None => Ok((nodes, None)),
        Some(at) => Err(ImportError::Syntax {
            path: files[at.file].clone(),
            message: format!(
                "the block opened at {} is not closed: add its `}}`",
                place(files, at)
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own under the system's temp dir.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-import-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn outline(nodes: &[Node]) -> String {
        nodes
            .iter()
            .map(|n| {
                let mut s = format!("{}@{}", n.keyword, n.at.line);
                for v in &n.values {
                    s.push(' ');
                    s.push_str(v);
                }
                if let Some(b) = &n.block {
                    s.push_str(&format!(" [{}]", outline(b)));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn parse_text(text: &str) -> Result<Parsed, ImportError> {
        let dir = scratch("text");
        let path = dir.join("keepalived.conf");
        std::fs::write(&path, text).unwrap();
        parse_file(&path)
    }

    #[test]
    fn nested_blocks_and_statements_sharing_a_line() {
        let parsed = parse_text(
            "virtual_server 10.0.0.1 80 {\n  real_server 10.0.1.1 80 { weight 2 }\n  \
             real_server 10.0.1.2 80\n  {\n    TCP_CHECK {\n      connect_timeout 3\n    }\n  }\n}\n",
        )
        .unwrap();
        assert_eq!(
            outline(&parsed.nodes),
            "virtual_server@1 10.0.0.1 80 [real_server@2 10.0.1.1 80 [weight@2 2]; \
             real_server@3 10.0.1.2 80 [TCP_CHECK@5 [connect_timeout@6 3]]]"
        );
    }

    #[test]
    fn unbalanced_braces_are_errors_with_the_line() {
        let e = parse_text("a {\n b 1\n").err().unwrap().to_string();
        assert!(e.contains("keepalived.conf:1 is not closed"), "{e}");
        let e = parse_text("a 1\n}\n").err().unwrap().to_string();
        assert!(e.contains("line 2: `}` closes no block"), "{e}");
        let e = parse_text("\n{\n}\n").err().unwrap().to_string();
        assert!(e.contains("line 2: `{` opens a block"), "{e}");
    }

    #[test]
    fn include_globs_relative_to_the_including_file_in_order() {
        let dir = scratch("include");
        std::fs::create_dir_all(dir.join("conf.d/sub")).unwrap();
        std::fs::write(
            dir.join("keepalived.conf"),
            "global_defs {\n  include conf.d/globals\n}\ninclude conf.d/*.conf\nlast 1\n",
        )
        .unwrap();
        std::fs::write(dir.join("conf.d/globals"), "router_id x\n").unwrap();
        std::fs::write(dir.join("conf.d/b.conf"), "b 2\n").unwrap();
        // Relative to conf.d/, the including file's directory.
        std::fs::write(dir.join("conf.d/a.conf"), "a 1\ninclude sub/c\n").unwrap();
        std::fs::write(dir.join("conf.d/sub/c"), "c 3\n").unwrap();
        std::fs::write(dir.join("conf.d/.hidden.conf"), "hidden 1\n").unwrap();
        let parsed = parse_file(&dir.join("keepalived.conf")).unwrap();
        assert_eq!(
            outline(&parsed.nodes),
            "global_defs@1 [router_id@1 x]; a@1 1; c@1 3; b@1 2; last@5 1"
        );
        let names: Vec<String> = parsed
            .files
            .iter()
            .map(|f| f.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "keepalived.conf",
                "conf.d/globals",
                "conf.d/a.conf",
                "conf.d/sub/c",
                "conf.d/b.conf"
            ]
        );
        // Each node names its own file.
        assert_eq!(parsed.nodes[1].at.file, 2);
        assert!(parsed.notes.is_empty());
    }

    #[test]
    fn parameters_are_substituted_in_the_lines_after_their_definition() {
        let parsed = parse_text(
            "a $PORT\n$PORT=80\n$RS=10.0.0.1 ${PORT}\nb $PORT ${PORT}x \"$PORT\" $OTHER\n\
             real_server $RS {\n}\n",
        )
        .unwrap();
        assert_eq!(
            outline(&parsed.nodes),
            "a@1 $PORT; b@4 80 80x 80 $OTHER; real_server@5 10.0.0.1 80 []"
        );
        assert_eq!(
            parsed.includes.len(),
            2,
            "the definitions count as converted"
        );
    }

    #[test]
    fn include_matching_nothing_is_reported_and_a_loop_is_an_error() {
        let dir = scratch("loop");
        std::fs::write(dir.join("k.conf"), "include none/*.conf\ninclude k.conf\n").unwrap();
        let e = parse_file(&dir.join("k.conf")).err().unwrap().to_string();
        assert!(e.contains("include"), "{e}");
        std::fs::write(dir.join("k.conf"), "include none/*.conf\n").unwrap();
        let parsed = parse_file(&dir.join("k.conf")).unwrap();
        assert_eq!(parsed.notes.len(), 1);
        assert!(parsed.notes[0].reason.contains("no file matches"));
    }
}
