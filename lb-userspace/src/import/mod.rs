//! `lb import keepalived FILE`: a keepalived.conf (with its includes)
//! turned into an lb config.
//!
//! What lb can do is converted (virtual servers, real servers, checks,
//! VRRP instances and sync groups); everything else is listed with its
//! file, line and the reason: no statement of the input is dropped
//! without a [`Note`]. The TOML says in comments which line each table
//! and key came from.
//!
//! Layout: `lexer` (text to tokens) and `glob` are pure; `parse` reads the
//! files (includes) and builds the statement tree; `keepalived` walks the
//! tree, with `lvs` (virtual_server), `checks` (HTTP_GET, TCP_CHECK, ...)
//! and `vrrp` for the blocks, into the document `emit` writes as TOML.

mod checks;
mod emit;
mod glob;
mod keepalived;
pub mod lexer;
mod lvs;
pub mod parse;
mod vrrp;

use std::{fmt, path::PathBuf};

/// Where a statement was written: an index into [`Import::files`] and a
/// 1-based line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Src {
    pub file: usize,
    pub line: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// lb has no equivalent: the statement had no effect on the output.
    NotConverted,
    /// Meaningless for lb (mail, SNMP, keepalived's own process): no effect.
    Ignored,
    /// Converted, but lb's behaviour differs in the way the reason says.
    Changed,
    /// The output holds a value the user must check or edit.
    Edit,
}

impl NoteKind {
    fn label(self) -> &'static str {
        match self {
            NoteKind::NotConverted => "NOT CONVERTED",
            NoteKind::Ignored => "ignored",
            NoteKind::Changed => "converted, differs",
            NoteKind::Edit => "EDIT THE OUTPUT",
        }
    }
}

/// One statement that was not converted as is, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub at: Src,
    /// The statement's last line in the same file (its block's `}`):
    /// a block that was not converted is listed with all its lines.
    pub last_line: u32,
    /// The statement as written (keyword and values).
    pub what: String,
    pub kind: NoteKind,
    pub reason: String,
}

/// The result of an import: the TOML text and the notes for stderr.
#[derive(Debug)]
pub struct Import {
    pub toml: String,
    /// In file and line order.
    pub notes: Vec<Note>,
    /// Every file read; [`Src::file`] indexes this.
    pub files: Vec<PathBuf>,
    /// Where the statements converted without a note were, in order.
    pub converted: Vec<Src>,
}

impl Import {
    /// `file:line: what: KIND: reason` (`file:first-last` for a block), one
    /// line per note.
    pub fn render_note(&self, note: &Note) -> String {
        let lines = if note.last_line > note.at.line {
            format!("{}-{}", note.at.line, note.last_line)
        } else {
            note.at.line.to_string()
        };
        format!(
            "{}:{lines}: {}: {}: {}",
            self.files[note.at.file].display(),
            note.what,
            note.kind.label(),
            note.reason
        )
    }

    pub fn notes_of(&self, kind: NoteKind) -> impl Iterator<Item = &Note> {
        self.notes.iter().filter(move |n| n.kind == kind)
    }

    /// One line for the end of stderr: what was converted and the notes
    /// by kind.
    pub fn summary(&self) -> String {
        let count = |k| self.notes_of(k).count();
        format!(
            "lb import: {} statements converted as written; {} to edit in the output, \
             {} not converted, {} converted with a difference, {} ignored",
            self.converted.len(),
            count(NoteKind::Edit),
            count(NoteKind::NotConverted),
            count(NoteKind::Changed),
            count(NoteKind::Ignored),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}{}: cannot read: {error}", path.display(), from.as_ref().map(|f| format!(" (included at {f})")).unwrap_or_default())]
    Read {
        path: PathBuf,
        from: Option<String>,
        error: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{at}: include nested too deep: the files include each other in a loop")]
    IncludeLoop { at: String },
}

/// Reads and converts a keepalived.conf and the files it includes.
pub fn keepalived(path: &std::path::Path) -> Result<Import, ImportError> {
    let parsed = parse::parse_file(path)?;
    let files = parsed.files.clone();
    let mut import = keepalived::convert(parsed);
    import.files = files;
    Ok(import)
}

impl fmt::Display for Src {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file {} line {}", self.file, self.line)
    }
}
