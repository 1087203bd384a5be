//! keepalived.conf text to tokens, one file at a time, with no I/O.
//!
//! keepalived's syntax is line based: a line holds a keyword and its
//! values, `{` and `}` open and close a block (they need no space around
//! them), a word starting with `#` or `!` outside quotes starts a comment
//! that runs to the end of the line, and double quotes group words with
//! their spaces (`notify_master "/path/script arg"`). A line ending in
//! `\` continues on the next one; `${NAME}` (a parameter reference) is
//! part of its word. The line number of every token is kept:
//! every message of `lb import` names the line it is about.

/// One word, `{`, `}` or the end of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// A word with its quotes removed; `quoted` if any part was quoted
    /// (a quoted `"{"` or `"#"` is a word, not syntax).
    Word {
        text: String,
        quoted: bool,
    },
    Open,
    Close,
    /// Ends every line that held a token: a keyword's values stop here.
    LineEnd,
}

/// A token and the 1-based line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lexed {
    pub token: Token,
    pub line: u32,
}

/// Text keepalived itself would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("line {line}: a double quote is not closed on this line: close it with `\"`")]
    UnclosedQuote { line: u32 },
}

/// Tokens of one file's text, line by line.
pub fn lex(text: &str) -> Result<Vec<Lexed>, LexError> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut first_line = 0u32;
    for (index, raw) in text.lines().enumerate() {
        let number = index as u32 + 1;
        if pending.is_empty() {
            first_line = number;
        }
        // A continued line is joined before it is split, so a quote may
        // not span lines but a list of values may.
        if let Some(head) = continued(raw) {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        lex_line(&pending, first_line, &mut out)?;
        pending.clear();
    }
    if !pending.is_empty() {
        lex_line(&pending, first_line, &mut out)?;
    }
    Ok(out)
}

/// The line without its continuation backslash, if it ends with one
/// outside a comment.
fn continued(line: &str) -> Option<&str> {
    let trimmed = line.trim_end();
    let head = trimmed.strip_suffix('\\')?;
    let first = head.split_whitespace().next().unwrap_or("");
    if first.starts_with('#') || first.starts_with('!') {
        return None;
    }
    Some(head)
}

fn lex_line(line: &str, number: u32, out: &mut Vec<Lexed>) -> Result<(), LexError> {
    let start = out.len();
    let push = |out: &mut Vec<Lexed>, token| {
        out.push(Lexed {
            token,
            line: number,
        })
    };
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let flush = |out: &mut Vec<Lexed>, word: &mut String, in_word: &mut bool, quoted: &mut bool| {
        if *in_word {
            push(
                out,
                Token::Word {
                    text: std::mem::take(word),
                    quoted: *quoted,
                },
            );
        }
        *in_word = false;
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_word = true;
                quoted = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => word.push(c),
                        None => return Err(LexError::UnclosedQuote { line: number }),
                    }
                }
            }
            '{' | '}' => {
                flush(out, &mut word, &mut in_word, &mut quoted);
                push(out, if c == '{' { Token::Open } else { Token::Close });
            }
            // `${NAME}` is a parameter reference, not a block.
            '$' if chars.peek() == Some(&'{') => {
                in_word = true;
                word.push('$');
                for c in chars.by_ref() {
                    word.push(c);
                    if c == '}' {
                        break;
                    }
                }
            }
            '#' | '!' if !in_word => break,
            c if c.is_whitespace() => flush(out, &mut word, &mut in_word, &mut quoted),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(out, &mut word, &mut in_word, &mut quoted);
    if out.len() > start {
        push(out, Token::LineEnd);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        lex(text)
            .unwrap()
            .into_iter()
            .map(|l| match l.token {
                Token::Word { text, quoted: true } => format!("\"{text}\""),
                Token::Word { text, .. } => text,
                Token::Open => "{".into(),
                Token::Close => "}".into(),
                Token::LineEnd => ";".into(),
            })
            .collect()
    }

    #[test]
    fn comments_with_hash_and_bang_anywhere_a_word_starts() {
        assert_eq!(
            words("# a comment\n! another\nkey value # trailing\nkey2 v!x ! gone\n"),
            ["key", "value", ";", "key2", "v!x", ";"]
        );
        // A comment char inside quotes is text.
        assert_eq!(words("auth_pass \"#1!\""), ["auth_pass", "\"#1!\"", ";"]);
    }

    #[test]
    fn quotes_keep_spaces_and_braces() {
        assert_eq!(
            words("notify_master \"/bin/n.sh lb1 MASTER\"\nx \"{\" a\"b c\"d\n"),
            [
                "notify_master",
                "\"/bin/n.sh lb1 MASTER\"",
                ";",
                "x",
                "\"{\"",
                "\"ab cd\"",
                ";"
            ]
        );
        assert_eq!(
            lex("a \"open\nb\n"),
            Err(LexError::UnclosedQuote { line: 1 })
        );
    }

    #[test]
    fn braces_need_no_spaces_and_lines_are_numbered() {
        let lexed = lex("\nvs 1.2.3.4 80{\n  weight 2}\n").unwrap();
        let lines: Vec<u32> = lexed.iter().map(|l| l.line).collect();
        assert_eq!(lines, [2, 2, 2, 2, 2, 3, 3, 3, 3]);
        assert_eq!(
            words("vs 1.2.3.4 80{\n  weight 2}\n"),
            ["vs", "1.2.3.4", "80", "{", ";", "weight", "2", "}", ";"]
        );
    }

    #[test]
    fn parameter_references_are_words() {
        assert_eq!(words("a ${X}y {\n"), ["a", "${X}y", "{", ";"]);
    }

    #[test]
    fn backslash_continues_a_line() {
        let lexed = lex("a b \\\n  c\nd\n").unwrap();
        assert_eq!(words("a b \\\n  c\nd\n"), ["a", "b", "c", ";", "d", ";"]);
        assert_eq!(lexed[2].line, 1);
        assert_eq!(lexed[4].line, 3);
    }
}
