//! What is wrong with a topology, and where: each [`Problem`] names the file, line, column and field, so that
//! every mistake in a file can be fixed in one pass rather than one error at a time.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Everything wrong with a topology, each problem with its place in the file.
#[derive(Debug, Clone)]
pub struct TopologyError {
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field, e.g. `hosts[2].interfaces[0].address`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)
    }
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TopologyError {}

impl TopologyError {
    /// A file (`what`: "the topology file", "the scenario") that could not be read: a problem without a line.
    pub fn unreadable(path: &Path, what: &str, error: &std::io::Error) -> TopologyError {
        TopologyError {
            problems: vec![Problem {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read {what}: {error}"),
            }],
        }
    }
}

/// Collects the problems of one topology; the checks (in [`super::check`]) keep going after a problem, so that a
/// single run reports them all.
pub(crate) struct Checker<'a> {
    /// The topology text the spans point into; empty when there is none (a renamed topology), and then problems
    /// carry no line or column.
    text: &'a str,
    pub(crate) file: String,
    pub(crate) problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(text: &'a str, file: String) -> Checker<'a> {
        Checker {
            text,
            file,
            problems: Vec::new(),
        }
    }

    pub(crate) fn text(&self) -> &'a str {
        self.text
    }
}

impl Checker<'_> {
    pub(crate) fn report(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        let (line, column) = if self.text.is_empty() {
            (0, 0)
        } else {
            line_column(self.text, span.start)
        };
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// A problem in another file the topology names (a file it places into a host), at a byte offset of `text`,
    /// that file's content.
    pub(crate) fn report_in(
        &mut self,
        file: &Path,
        text: &str,
        offset: usize,
        field: &str,
        message: impl Into<String>,
    ) {
        let (line, column) = line_column(text, offset);
        self.problems.push(Problem {
            file: file.display().to_string(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// The directory of the topology file, against which it names other files.
    pub(crate) fn directory(&self) -> PathBuf {
        let parent = Path::new(&self.file).parent().filter(|p| !p.as_os_str().is_empty());
        parent.unwrap_or(Path::new(".")).to_path_buf()
    }

    pub(crate) fn finish(self) -> TopologyError {
        TopologyError {
            problems: self.problems,
        }
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
