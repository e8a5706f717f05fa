//! The lexer: Go's `text/template/parse/lex.go` state machine, run eagerly
//! into a token list (Go runs it as a goroutine feeding the parser).

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Plain text outside actions.
    Text,
    /// `{{` (a trim marker is already applied).
    LeftDelim,
    /// `}}`.
    RightDelim,
    /// Run of spaces inside an action (separates arguments).
    Space,
    /// `.Name` (`val` keeps the dot).
    Field,
    /// `$` or `$name`.
    Variable,
    /// A function name.
    Identifier,
    /// `true` or `false`.
    Bool,
    /// `nil`.
    Nil,
    /// `.` alone.
    Dot,
    /// A number literal.
    Number,
    /// `'c'`.
    CharConstant,
    /// `"..."` (still quoted).
    String,
    /// `` `...` `` (still quoted).
    RawString,
    /// `|`.
    Pipe,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
    /// `(`.
    LeftParen,
    /// `)`.
    RightParen,
    /// Any other printable ASCII character (only `,` is meaningful).
    Char,
    /// Keywords.
    Break,
    Continue,
    Else,
    End,
    If,
    Range,
    With,
    Define,
    Template,
    Block,
    /// End of input.
    Eof,
    /// A lexical error; `val` is the message. Always the last token.
    Error,
}

impl Kind {
    /// Keywords print as `<word>` in "unexpected" errors, as in Go.
    fn is_keyword(self) -> bool {
        matches!(
            self,
            Kind::Break
                | Kind::Continue
                | Kind::Else
                | Kind::End
                | Kind::If
                | Kind::Range
                | Kind::With
                | Kind::Define
                | Kind::Template
                | Kind::Block
                | Kind::Nil
                | Kind::Dot
        )
    }
}

/// One token: kind, text and byte offset in the template.
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) val: String,
    pub(super) pos: usize,
}

impl std::fmt::Display for Token {
    /// Go's `item.String()`, used in "unexpected X in Y" errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            Kind::Eof => f.write_str("EOF"),
            Kind::Error => f.write_str(&self.val),
            k if k.is_keyword() => write!(f, "<{}>", self.val),
            _ if self.val.chars().count() > 10 => {
                let head: String = self.val.chars().take(10).collect();
                write!(f, "{}...", super::format::quote(&head))
            }
            _ => f.write_str(&super::format::quote(&self.val)),
        }
    }
}

const LEFT: &str = "{{";
const RIGHT: &str = "}}";
const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

fn has_left_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1])
}

fn has_right_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0]) && b[1] == b'-'
}

/// Go's `%#U`: `U+002D '-'`.
fn char_u(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("U+{:04X} '{c}'", u32::from(c))
    }
}

struct Lexer<'a> {
    input: &'a str,
    start: usize,
    pos: usize,
    paren_depth: i64,
    tokens: Vec<Token>,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        self.input.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn emit(&mut self, kind: Kind) {
        let val = self
            .input
            .get(self.start..self.pos)
            .unwrap_or("")
            .to_owned();
        self.tokens.push(Token {
            kind,
            val,
            pos: self.start,
        });
        self.start = self.pos;
    }

    fn ignore(&mut self) {
        self.start = self.pos;
    }

    fn error(&mut self, message: String) {
        self.tokens.push(Token {
            kind: Kind::Error,
            val: message,
            pos: self.start,
        });
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    /// Whether a right delimiter (optionally trim-marked) starts here.
    fn at_right_delim(&self) -> (bool, bool) {
        let rest = self.rest();
        if has_right_trim(rest) && rest.get(2..).is_some_and(|r| r.starts_with(RIGHT)) {
            return (true, true);
        }
        (rest.starts_with(RIGHT), false)
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            None | Some(' ' | '\t' | '\r' | '\n' | '.' | ',' | '|' | ':' | ')' | '(') => true,
            // Go checks only the delimiter's first character here.
            Some(c) => c == '}',
        }
    }

    fn skip_leading_space(&mut self) {
        let n = self.rest().bytes().take_while(|&b| is_space(b)).count();
        self.pos += n;
        self.ignore();
    }

    /// Lexes text up to the next action; false at the end of input.
    fn text(&mut self) -> bool {
        if let Some(x) = self.rest().find(LEFT) {
            let delim = self.pos + x;
            let trim = has_left_trim(self.input.get(delim + LEFT.len()..).unwrap_or(""));
            let mut end = delim;
            if trim {
                let text = self.input.get(self.start..delim).unwrap_or("");
                end = self.start + text.trim_end_matches([' ', '\t', '\r', '\n']).len();
            }
            self.pos = end;
            if self.pos > self.start {
                self.emit(Kind::Text);
            }
            self.pos = delim;
            self.ignore();
            return true;
        }
        self.pos = self.input.len();
        if self.pos > self.start {
            self.emit(Kind::Text);
        }
        self.tokens.push(Token {
            kind: Kind::Eof,
            val: String::new(),
            pos: self.pos,
        });
        false
    }

    /// Lexes `{{` or a whole comment; false on error.
    fn left_delim(&mut self) -> bool {
        self.pos += LEFT.len();
        let trim = has_left_trim(self.rest());
        let after = if trim { 2 } else { 0 };
        if self
            .rest()
            .get(after..)
            .is_some_and(|r| r.starts_with(LEFT_COMMENT))
        {
            self.pos += after;
            self.ignore();
            return self.comment();
        }
        self.emit(Kind::LeftDelim);
        self.pos += after;
        self.ignore();
        self.paren_depth = 0;
        self.inside_action()
    }

    fn comment(&mut self) -> bool {
        self.pos += LEFT_COMMENT.len();
        let Some(x) = self.rest().find(RIGHT_COMMENT) else {
            self.error("unclosed comment".to_owned());
            return false;
        };
        self.pos += x + RIGHT_COMMENT.len();
        let (delim, trim) = self.at_right_delim();
        if !delim {
            self.error("comment ends before closing delimiter".to_owned());
            return false;
        }
        if trim {
            self.pos += 2;
        }
        self.pos += RIGHT.len();
        if trim {
            self.skip_leading_space();
        }
        self.ignore();
        true
    }

    /// Lexes the inside of an action through its `}}`; false on error.
    fn inside_action(&mut self) -> bool {
        loop {
            let (delim, trim) = self.at_right_delim();
            if delim {
                if self.paren_depth != 0 {
                    self.error("unclosed left paren".to_owned());
                    return false;
                }
                if trim {
                    self.pos += 2;
                    self.ignore();
                }
                self.pos += RIGHT.len();
                self.emit(Kind::RightDelim);
                if trim {
                    self.skip_leading_space();
                }
                return true;
            }
            let Some(c) = self.next() else {
                self.error("unclosed action".to_owned());
                return false;
            };
            let ok = match c {
                ' ' | '\t' | '\r' | '\n' => {
                    self.pos -= 1;
                    self.space();
                    true
                }
                '=' => {
                    self.emit(Kind::Assign);
                    true
                }
                ':' => {
                    if self.next() == Some('=') {
                        self.emit(Kind::Declare);
                        true
                    } else {
                        self.error("expected :=".to_owned());
                        false
                    }
                }
                '|' => {
                    self.emit(Kind::Pipe);
                    true
                }
                '"' => self.quote(),
                '`' => self.raw_quote(),
                '$' => self.field_or_variable(Kind::Variable),
                '\'' => self.char_constant(),
                '.' if !self.peek().is_some_and(|c| c.is_ascii_digit()) => {
                    self.field_or_variable(Kind::Field)
                }
                '.' | '+' | '-' | '0'..='9' => {
                    self.pos -= 1;
                    self.number()
                }
                '(' => {
                    self.emit(Kind::LeftParen);
                    self.paren_depth += 1;
                    true
                }
                ')' => {
                    self.emit(Kind::RightParen);
                    self.paren_depth -= 1;
                    if self.paren_depth < 0 {
                        self.error("unexpected right paren".to_owned());
                        false
                    } else {
                        true
                    }
                }
                c if is_alphanumeric(c) => {
                    self.pos -= c.len_utf8();
                    self.identifier()
                }
                c if c.is_ascii_graphic() => {
                    self.emit(Kind::Char);
                    true
                }
                c => {
                    self.error(format!("unrecognized character in action: {}", char_u(c)));
                    false
                }
            };
            if !ok {
                return false;
            }
        }
    }

    fn space(&mut self) {
        let n = self.rest().bytes().take_while(|&b| is_space(b)).count();
        self.pos += n;
        // Leave the space of a trim-marked " -}}" for the delimiter.
        let before = self.input.get(self.pos - 1..).unwrap_or("");
        if has_right_trim(before) && before.get(2..).is_some_and(|r| r.starts_with(RIGHT)) {
            self.pos -= 1;
            if n == 1 {
                return;
            }
        }
        self.emit(Kind::Space);
    }

    fn identifier(&mut self) -> bool {
        while self.peek().is_some_and(is_alphanumeric) {
            self.next();
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or('\0');
            self.error(format!("bad character {}", char_u(c)));
            return false;
        }
        let word = self.input.get(self.start..self.pos).unwrap_or("");
        let kind = match word {
            "break" => Kind::Break,
            "continue" => Kind::Continue,
            "else" => Kind::Else,
            "end" => Kind::End,
            "if" => Kind::If,
            "range" => Kind::Range,
            "with" => Kind::With,
            "define" => Kind::Define,
            "template" => Kind::Template,
            "block" => Kind::Block,
            "nil" => Kind::Nil,
            "true" | "false" => Kind::Bool,
            _ => Kind::Identifier,
        };
        self.emit(kind);
        true
    }

    fn field_or_variable(&mut self, kind: Kind) -> bool {
        if self.at_terminator() {
            self.emit(if kind == Kind::Variable {
                Kind::Variable
            } else {
                Kind::Dot
            });
            return true;
        }
        while self.peek().is_some_and(is_alphanumeric) {
            self.next();
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or('\0');
            self.error(format!("bad character {}", char_u(c)));
            return false;
        }
        self.emit(kind);
        true
    }

    fn char_constant(&mut self) -> bool {
        loop {
            match self.next() {
                Some('\\') => {
                    if matches!(self.next(), None | Some('\n')) {
                        self.error("unterminated character constant".to_owned());
                        return false;
                    }
                }
                None | Some('\n') => {
                    self.error("unterminated character constant".to_owned());
                    return false;
                }
                Some('\'') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::CharConstant);
        true
    }

    fn quote(&mut self) -> bool {
        loop {
            match self.next() {
                Some('\\') => {
                    if matches!(self.next(), None | Some('\n')) {
                        self.error("unterminated quoted string".to_owned());
                        return false;
                    }
                }
                None | Some('\n') => {
                    self.error("unterminated quoted string".to_owned());
                    return false;
                }
                Some('"') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::String);
        true
    }

    fn raw_quote(&mut self) -> bool {
        let Some(x) = self.rest().find('`') else {
            self.error("unterminated raw quoted string".to_owned());
            return false;
        };
        self.pos += x + 1;
        self.emit(Kind::RawString);
        true
    }

    /// Go's `scanNumber`, without complex numbers.
    fn number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if self.peek().is_some_and(is_alphanumeric) {
            self.next();
            let text = self.input.get(self.start..self.pos).unwrap_or("");
            let message = format!("bad number syntax: {}", super::format::quote(text));
            self.error(message);
            return false;
        }
        self.emit(Kind::Number);
        true
    }
}

/// Splits a template into tokens, ending with `Eof` or `Error`.
pub(super) fn lex(input: &str) -> Vec<Token> {
    let mut lexer = Lexer {
        input,
        start: 0,
        pos: 0,
        paren_depth: 0,
        tokens: Vec::new(),
    };
    while lexer.text() {
        if !lexer.left_delim() {
            break;
        }
    }
    lexer.tokens
}
