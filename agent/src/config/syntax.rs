//! keepalived.conf's surface syntax: words separated by blanks, `{` `}` blocks, `#` and `!` comments, double
//! quoted strings, and `include GLOB` spliced in place. The result is a tree of statements, each word with the
//! file, line and column it came from, so every later complaint can point at it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Diagnostic, Severity};

/// Where a word starts: file, line and column, all as a human counts them (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub at: Location,
}

/// One statement: a keyword, its arguments on the same line, and the block that follows, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub keyword: Word,
    pub args: Vec<Word>,
    pub block: Option<Vec<Statement>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(Word),
    Open(Location),
    Close(Location),
    EndOfLine,
}

/// Includes nested deeper than this are taken for a loop.
const MAX_INCLUDE_DEPTH: usize = 8;

/// Reads `path` (and what it includes) into statements. Problems are pushed to `diagnostics`; what could be read
/// is returned either way.
pub fn read_file(path: &Path, diagnostics: &mut Vec<Diagnostic>) -> Vec<Statement> {
    let mut tokens = Vec::new();
    match std::fs::read_to_string(path) {
        Ok(text) => tokenize(&text, Arc::from(path), 0, &mut tokens, diagnostics),
        Err(error) => diagnostics.push(Diagnostic::without_location(
            Severity::Error,
            format!("cannot read {}: {error}", path.display()),
        )),
    }
    build_tree(tokens, diagnostics)
}

/// Reads configuration text; `name` is the file name used in locations and the base of relative includes.
pub fn read_str(text: &str, name: &Path, diagnostics: &mut Vec<Diagnostic>) -> Vec<Statement> {
    let mut tokens = Vec::new();
    tokenize(text, Arc::from(name), 0, &mut tokens, diagnostics);
    build_tree(tokens, diagnostics)
}

fn tokenize(text: &str, file: Arc<Path>, depth: usize, tokens: &mut Vec<Token>, diagnostics: &mut Vec<Diagnostic>) {
    for (index, line) in text.lines().enumerate() {
        let at = |column: usize| Location {
            file: file.clone(),
            line: index + 1,
            column,
        };
        let words = split_line(line, &at, diagnostics);
        if let Some(Token::Word(first)) = words.first() {
            if first.text == "include" {
                include(&words[1..], &first.at, depth, tokens, diagnostics);
                continue;
            }
        }
        if !words.is_empty() {
            tokens.extend(words);
            tokens.push(Token::EndOfLine);
        }
    }
}

/// Splits one line into words and braces, dropping comments. A quoted string is one word without its quotes.
fn split_line(line: &str, at: &dyn Fn(usize) -> Location, diagnostics: &mut Vec<Diagnostic>) -> Vec<Token> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        match c {
            c if c.is_whitespace() => i += 1,
            '#' | '!' => break,
            '{' => {
                tokens.push(Token::Open(at(column)));
                i += 1;
            }
            '}' => {
                tokens.push(Token::Close(at(column)));
                i += 1;
            }
            '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '"')
                    .map(|offset| i + 1 + offset);
                let Some(end) = end else {
                    diagnostics.push(Diagnostic::new(
                        at(column),
                        Severity::Error,
                        "unterminated quoted string",
                    ));
                    let text = chars[i + 1..].iter().collect();
                    tokens.push(Token::Word(Word { text, at: at(column) }));
                    break;
                };
                let text = chars[i + 1..end].iter().collect();
                tokens.push(Token::Word(Word { text, at: at(column) }));
                i = end + 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '{' | '}' | '#' | '!' | '"') {
                    i += 1;
                }
                tokens.push(Token::Word(Word {
                    text: chars[start..i].iter().collect(),
                    at: at(column),
                }));
            }
        }
    }
    tokens
}

fn include(args: &[Token], at: &Location, depth: usize, tokens: &mut Vec<Token>, diagnostics: &mut Vec<Diagnostic>) {
    let [Token::Word(pattern)] = args else {
        diagnostics.push(Diagnostic::new(
            at.clone(),
            Severity::Error,
            "include: expected one file name or pattern",
        ));
        return;
    };
    if depth >= MAX_INCLUDE_DEPTH {
        let message = format!("include: nested more than {MAX_INCLUDE_DEPTH} deep (an include loop?)");
        diagnostics.push(Diagnostic::new(pattern.at.clone(), Severity::Error, message));
        return;
    }
    // Relative patterns are taken from the directory of the file that includes them.
    let base = at.file.parent().unwrap_or(Path::new(""));
    let full: PathBuf = base.join(&pattern.text);
    let paths = match glob::glob(&full.to_string_lossy()) {
        Ok(paths) => paths,
        Err(error) => {
            let message = format!("include: bad pattern {:?}: {error}", pattern.text);
            diagnostics.push(Diagnostic::new(pattern.at.clone(), Severity::Error, message));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
    paths.sort();
    if paths.is_empty() {
        let message = format!("include: no file matches {}", full.display());
        diagnostics.push(Diagnostic::new(pattern.at.clone(), Severity::Warning, message));
    }
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => tokenize(&text, Arc::from(path.as_path()), depth + 1, tokens, diagnostics),
            Err(error) => {
                let message = format!("include: cannot read {}: {error}", path.display());
                diagnostics.push(Diagnostic::new(pattern.at.clone(), Severity::Error, message));
            }
        }
    }
}

fn build_tree(tokens: Vec<Token>, diagnostics: &mut Vec<Diagnostic>) -> Vec<Statement> {
    let mut tokens = tokens.into_iter().peekable();
    statements(&mut tokens, None, diagnostics)
}

/// Statements until the `}` closing the block opened at `opened` (or the end of input at top level).
fn statements(
    tokens: &mut std::iter::Peekable<std::vec::IntoIter<Token>>,
    opened: Option<&Location>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Statement> {
    let mut statements: Vec<Statement> = Vec::new();
    loop {
        match tokens.next() {
            None => {
                if let Some(opened) = opened {
                    diagnostics.push(Diagnostic::new(
                        opened.clone(),
                        Severity::Error,
                        "block opened here is never closed",
                    ));
                }
                return statements;
            }
            Some(Token::EndOfLine) => {}
            Some(Token::Close(at)) => {
                if opened.is_some() {
                    return statements;
                }
                diagnostics.push(Diagnostic::new(at, Severity::Error, "'}' without a block to close"));
            }
            Some(Token::Open(at)) => {
                // A block on a line of its own belongs to the statement before it (brace on the next line).
                match statements.last_mut() {
                    Some(previous) if previous.block.is_none() => {
                        previous.block = Some(self::statements(tokens, Some(&at), diagnostics));
                    }
                    _ => {
                        diagnostics.push(Diagnostic::new(
                            at.clone(),
                            Severity::Error,
                            "'{' without a keyword before it",
                        ));
                        self::statements(tokens, Some(&at), diagnostics);
                    }
                }
            }
            Some(Token::Word(keyword)) => {
                let mut args = Vec::new();
                let mut block = None;
                while let Some(token) = tokens.peek() {
                    match token {
                        Token::Word(_) => {
                            let Some(Token::Word(word)) = tokens.next() else {
                                unreachable!()
                            };
                            args.push(word);
                        }
                        Token::Open(_) => {
                            let Some(Token::Open(at)) = tokens.next() else {
                                unreachable!()
                            };
                            block = Some(self::statements(tokens, Some(&at), diagnostics));
                            break;
                        }
                        Token::EndOfLine | Token::Close(_) => break,
                    }
                }
                statements.push(Statement { keyword, args, block });
            }
        }
    }
}
