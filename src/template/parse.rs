//! The parser: Go's `text/template/parse/parse.go`, producing the tree
//! that `exec` walks, with Go's error messages.

use std::fmt;
use std::fmt::Write as _;

use super::TemplateError;
use super::lex::{Kind, Token, lex};

/// Nesting deeper than this (blocks or parentheses) is refused, so
/// evaluation cannot overflow the stack.
const MAX_DEPTH: usize = 100;

/// A node of the template tree.
#[derive(Debug)]
pub(super) enum Node {
    /// Text between actions, at its byte offset.
    Text(usize, String),
    Action(Pipe),
    If(Branch),
    Range(Branch),
    With(Branch),
    Break,
    Continue,
}

/// The pipeline, body and else body of `if`, `range` and `with`.
#[derive(Debug)]
pub(super) struct Branch {
    pub(super) pipe: Pipe,
    pub(super) list: Vec<Node>,
    pub(super) else_list: Option<Vec<Node>>,
}

/// A pipeline: optional declarations, then commands joined by `|`.
#[derive(Debug)]
pub(super) struct Pipe {
    pub(super) pos: usize,
    pub(super) is_assign: bool,
    pub(super) decl: Vec<String>,
    pub(super) cmds: Vec<Command>,
}

/// One pipeline stage: a function, field or value and its arguments.
#[derive(Debug)]
pub(super) struct Command {
    pub(super) pos: usize,
    pub(super) args: Vec<Operand>,
}

/// A literal number, typed the way Go's `idealConstant` types it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Number {
    Int(i64),
    Float(f64),
    /// An integer literal too large for an int.
    Overflow,
}

/// An argument or command word.
#[derive(Debug)]
pub(super) enum Operand {
    Field {
        pos: usize,
        idents: Vec<String>,
    },
    Variable {
        pos: usize,
        idents: Vec<String>,
    },
    Dot(usize),
    Nil(usize),
    Bool(usize, bool),
    Number {
        pos: usize,
        text: String,
        value: Number,
    },
    String {
        pos: usize,
        quoted: String,
        value: String,
    },
    Identifier {
        pos: usize,
        name: String,
    },
    Pipe(Box<Pipe>),
    Chain {
        pos: usize,
        node: Box<Operand>,
        fields: Vec<String>,
    },
}

impl Operand {
    pub(super) fn pos(&self) -> usize {
        match self {
            Operand::Field { pos, .. }
            | Operand::Variable { pos, .. }
            | Operand::Dot(pos)
            | Operand::Nil(pos)
            | Operand::Bool(pos, _)
            | Operand::Number { pos, .. }
            | Operand::String { pos, .. }
            | Operand::Identifier { pos, .. }
            | Operand::Chain { pos, .. } => *pos,
            Operand::Pipe(pipe) => pipe.pos,
        }
    }
}

// Display gives Go's node.String(), shown in `executing "" at <...>`.
impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Field { idents, .. } => {
                for ident in idents {
                    write!(f, ".{ident}")?;
                }
                Ok(())
            }
            Operand::Variable { idents, .. } => f.write_str(&idents.join(".")),
            Operand::Dot(_) => f.write_str("."),
            Operand::Nil(_) => f.write_str("nil"),
            Operand::Bool(_, b) => write!(f, "{b}"),
            Operand::Number { text, .. } => f.write_str(text),
            Operand::String { quoted, .. } => f.write_str(quoted),
            Operand::Identifier { name, .. } => f.write_str(name),
            Operand::Pipe(pipe) => write!(f, "({pipe})"),
            Operand::Chain { node, fields, .. } => {
                write!(f, "{node}")?;
                for field in fields {
                    write!(f, ".{field}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{arg}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            f.write_str(&self.decl.join(", "))?;
            f.write_str(if self.is_assign { " = " } else { " := " })?;
        }
        for (i, cmd) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{cmd}")?;
        }
        Ok(())
    }
}

/// What an action parsed into: a node, or the `{{end}}`/`{{else}}` that
/// closes the enclosing list.
enum Item {
    Node(Node),
    End,
    Else,
}

/// The line (1-based) of a byte offset.
pub(super) fn line_of(text: &str, pos: usize) -> usize {
    let before = text.get(..pos).unwrap_or(text);
    1 + before.matches('\n').count()
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    next: usize,
    /// Offset of the last token read: Go reports errors on its line.
    last_pos: usize,
    /// Offset of the `{{` of the action being parsed, if any.
    action_pos: Option<usize>,
    vars: Vec<String>,
    range_depth: usize,
    depth: usize,
    builtins: &'a [&'a str],
}

type Result<T> = std::result::Result<T, TemplateError>;

impl Parser<'_> {
    fn token(&self, i: usize) -> Token {
        // The lexer always ends with Eof or Error; reading past it repeats it.
        self.tokens
            .get(i)
            .or_else(|| self.tokens.last())
            .cloned()
            .unwrap_or(Token {
                kind: Kind::Eof,
                val: String::new(),
                pos: self.text.len(),
            })
    }

    fn next(&mut self) -> Token {
        let token = self.token(self.next);
        if self.next < self.tokens.len() {
            self.next += 1;
        }
        self.last_pos = token.pos;
        token
    }

    fn backup(&mut self) {
        self.next = self.next.saturating_sub(1);
    }

    fn peek(&self) -> Token {
        self.token(self.next)
    }

    fn next_non_space(&mut self) -> Token {
        loop {
            let token = self.next();
            if token.kind != Kind::Space {
                return token;
            }
        }
    }

    fn peek_non_space(&mut self) -> Token {
        let token = self.next_non_space();
        self.backup();
        token
    }

    fn error(&self, message: impl Into<String>) -> TemplateError {
        TemplateError::Parse {
            line: line_of(self.text, self.last_pos),
            message: message.into(),
        }
    }

    fn unexpected(&self, token: &Token, context: &str) -> TemplateError {
        if token.kind == Kind::Error {
            let line = line_of(self.text, token.pos);
            let mut message = token.val.clone();
            if let Some(action) = self.action_pos {
                let action_line = line_of(self.text, action);
                if action_line != line {
                    if token.val.ends_with(" action") {
                        let _ = write!(message, " started at :{action_line}");
                    } else {
                        let _ = write!(message, " in action started at :{action_line}");
                    }
                }
            }
            return TemplateError::Parse { line, message };
        }
        self.error(format!("unexpected {token} in {context}"))
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("max expression depth exceeded"));
        }
        Ok(())
    }

    fn parse(&mut self) -> Result<Vec<Node>> {
        let mut root = Vec::new();
        while self.peek().kind != Kind::Eof {
            match self.text_or_action()? {
                Item::Node(node) => root.push(node),
                Item::End => return Err(self.error("unexpected {{end}}")),
                Item::Else => return Err(self.error("unexpected {{else}}")),
            }
        }
        Ok(root)
    }

    fn item_list(&mut self) -> Result<(Vec<Node>, Item)> {
        let mut list = Vec::new();
        while self.peek_non_space().kind != Kind::Eof {
            match self.text_or_action()? {
                Item::Node(node) => list.push(node),
                end => return Ok((list, end)),
            }
        }
        Err(self.error("unexpected EOF"))
    }

    fn text_or_action(&mut self) -> Result<Item> {
        let token = self.next_non_space();
        match token.kind {
            Kind::Text => Ok(Item::Node(Node::Text(token.pos, token.val))),
            Kind::LeftDelim => {
                self.action_pos = Some(token.pos);
                let item = self.action();
                self.action_pos = None;
                item
            }
            _ => Err(self.unexpected(&token, "input")),
        }
    }

    fn action(&mut self) -> Result<Item> {
        let token = self.next_non_space();
        match token.kind {
            Kind::Break | Kind::Continue => {
                let word = if token.kind == Kind::Break {
                    "break"
                } else {
                    "continue"
                };
                let close = self.next_non_space();
                if close.kind != Kind::RightDelim {
                    return Err(self.unexpected(&close, &format!("{{{{{word}}}}}")));
                }
                if self.range_depth == 0 {
                    return Err(self.error(format!("{{{{{word}}}}} outside {{{{range}}}}")));
                }
                Ok(Item::Node(if token.kind == Kind::Break {
                    Node::Break
                } else {
                    Node::Continue
                }))
            }
            Kind::Else => {
                let peek = self.peek_non_space();
                if !matches!(peek.kind, Kind::If | Kind::With) {
                    self.expect(Kind::RightDelim, "else")?;
                }
                Ok(Item::Else)
            }
            Kind::End => {
                self.expect(Kind::RightDelim, "end")?;
                Ok(Item::End)
            }
            Kind::If => Ok(Item::Node(Node::If(self.control("if")?))),
            Kind::Range => Ok(Item::Node(Node::Range(self.control("range")?))),
            Kind::With => Ok(Item::Node(Node::With(self.control("with")?))),
            Kind::Define | Kind::Template | Kind::Block => Err(self.error(format!(
                "{{{{{}}}}} is not supported in format templates",
                token.val
            ))),
            _ => {
                self.backup();
                // Variables declared here live until the enclosing {{end}}.
                let pipe = self.pipeline("command", Kind::RightDelim)?;
                Ok(Item::Node(Node::Action(pipe)))
            }
        }
    }

    fn expect(&mut self, kind: Kind, context: &str) -> Result<Token> {
        let token = self.next_non_space();
        if token.kind != kind {
            return Err(self.unexpected(&token, context));
        }
        Ok(token)
    }

    fn control(&mut self, context: &str) -> Result<Branch> {
        self.enter()?;
        let vars = self.vars.len();
        let pipe = self.pipeline(context, Kind::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let listed = self.item_list();
        if context == "range" {
            self.range_depth -= 1;
        }
        let (list, next) = listed?;
        let else_list = match next {
            Item::Else => {
                let chained = match self.peek().kind {
                    Kind::If if context == "if" => Some("if"),
                    Kind::With if context == "with" => Some("with"),
                    _ => None,
                };
                if let Some(word) = chained {
                    // {{else if x}} is {{else}}{{if x}}...{{end}}{{end}}, sharing the end.
                    self.next();
                    let branch = self.control(word)?;
                    Some(vec![if word == "if" {
                        Node::If(branch)
                    } else {
                        Node::With(branch)
                    }])
                } else {
                    let (else_list, next) = self.item_list()?;
                    if !matches!(next, Item::End) {
                        return Err(self.error("expected end; found {{else}}"));
                    }
                    Some(else_list)
                }
            }
            _ => None,
        };
        self.vars.truncate(vars);
        self.depth -= 1;
        Ok(Branch {
            pipe,
            list,
            else_list,
        })
    }

    fn pipeline(&mut self, context: &str, end: Kind) -> Result<Pipe> {
        let start = self.peek_non_space();
        let mut pipe = Pipe {
            pos: start.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        loop {
            let v = self.peek_non_space();
            if v.kind != Kind::Variable {
                break;
            }
            self.next_non_space();
            let after = self.peek();
            let next = self.peek_non_space();
            match next.kind {
                Kind::Assign | Kind::Declare => {
                    pipe.is_assign = next.kind == Kind::Assign;
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                }
                Kind::Char if next.val == "," => {
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        let peek = self.peek_non_space();
                        if matches!(
                            peek.kind,
                            Kind::Variable | Kind::RightDelim | Kind::RightParen
                        ) {
                            continue;
                        }
                        return Err(self.error("range can only initialize variables"));
                    }
                    return Err(self.error(format!("too many declarations in {context}")));
                }
                _ => {
                    // Not a declaration: put the variable (and its space) back.
                    if after.kind == Kind::Space {
                        self.backup();
                    }
                    self.backup();
                }
            }
            break;
        }
        loop {
            let token = self.next_non_space();
            match token.kind {
                k if k == end => {
                    self.check_pipeline(&pipe, context)?;
                    return Ok(pipe);
                }
                Kind::Bool
                | Kind::CharConstant
                | Kind::Dot
                | Kind::Field
                | Kind::Identifier
                | Kind::Number
                | Kind::Nil
                | Kind::RawString
                | Kind::String
                | Kind::Variable
                | Kind::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&token, context)),
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str) -> Result<()> {
        if pipe.cmds.is_empty() {
            return Err(self.error(format!("missing value for {context}")));
        }
        for (i, cmd) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                cmd.args.first(),
                Some(
                    Operand::Bool(..)
                        | Operand::Dot(_)
                        | Operand::Nil(_)
                        | Operand::Number { .. }
                        | Operand::String { .. }
                )
            ) {
                return Err(self.error(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> Result<Command> {
        let pos = self.peek_non_space().pos;
        let mut cmd = Command {
            pos,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(operand) = self.operand()? {
                cmd.args.push(operand);
            }
            let token = self.next();
            match token.kind {
                Kind::Space => continue,
                Kind::RightDelim | Kind::RightParen => self.backup(),
                Kind::Pipe => {}
                _ => return Err(self.unexpected(&token, "operand")),
            }
            break;
        }
        if cmd.args.is_empty() {
            return Err(self.error("empty command"));
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> Result<Option<Operand>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != Kind::Field {
            return Ok(Some(node));
        }
        let chain_pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().kind == Kind::Field {
            let field = self.next();
            fields.push(field.val.get(1..).unwrap_or("").to_owned());
        }
        Ok(Some(match node {
            // Go's parser places a chained field or variable at its
            // second identifier (`newField(chain.Position(), ...)`), and
            // errors report that column.
            Operand::Field { mut idents, .. } => {
                idents.extend(fields);
                Operand::Field {
                    pos: chain_pos,
                    idents,
                }
            }
            Operand::Variable { mut idents, .. } => {
                idents.extend(fields);
                Operand::Variable {
                    pos: chain_pos,
                    idents,
                }
            }
            Operand::Bool(..)
            | Operand::String { .. }
            | Operand::Number { .. }
            | Operand::Nil(_)
            | Operand::Dot(_) => {
                return Err(self.error(format!(
                    "unexpected . after term {}",
                    super::format::quote(&node.to_string())
                )));
            }
            node => Operand::Chain {
                pos: chain_pos,
                node: Box::new(node),
                fields,
            },
        }))
    }

    fn term(&mut self) -> Result<Option<Operand>> {
        let token = self.next_non_space();
        let pos = token.pos;
        Ok(Some(match token.kind {
            Kind::Identifier => {
                if !self.builtins.contains(&token.val.as_str()) {
                    return Err(self.error(format!(
                        "function {} not defined",
                        super::format::quote(&token.val)
                    )));
                }
                Operand::Identifier {
                    pos,
                    name: token.val,
                }
            }
            Kind::Dot => Operand::Dot(pos),
            Kind::Nil => Operand::Nil(pos),
            Kind::Variable => {
                if !self.vars.contains(&token.val) {
                    return Err(self.error(format!(
                        "undefined variable {}",
                        super::format::quote(&token.val)
                    )));
                }
                Operand::Variable {
                    pos,
                    idents: vec![token.val],
                }
            }
            Kind::Field => Operand::Field {
                pos,
                idents: vec![token.val.get(1..).unwrap_or("").to_owned()],
            },
            Kind::Bool => Operand::Bool(pos, token.val == "true"),
            Kind::Number | Kind::CharConstant => {
                let value = if token.kind == Kind::CharConstant {
                    let chars =
                        unquote(&token.val, '\'').ok_or_else(|| self.error("invalid syntax"))?;
                    let mut it = chars.chars();
                    match (it.next(), it.next()) {
                        (Some(c), None) => Number::Int(i64::from(u32::from(c))),
                        _ => return Err(self.error("invalid syntax")),
                    }
                } else {
                    parse_number(&token.val).ok_or_else(|| {
                        self.error(format!(
                            "illegal number syntax: {}",
                            super::format::quote(&token.val)
                        ))
                    })?
                };
                Operand::Number {
                    pos,
                    text: token.val,
                    value,
                }
            }
            Kind::LeftParen => {
                self.enter()?;
                let pipe = self.pipeline("parenthesized pipeline", Kind::RightParen)?;
                self.depth -= 1;
                Operand::Pipe(Box::new(pipe))
            }
            Kind::String => {
                let value = unquote(&token.val, '"').ok_or_else(|| self.error("invalid syntax"))?;
                Operand::String {
                    pos,
                    quoted: token.val,
                    value,
                }
            }
            Kind::RawString => {
                let inner = token
                    .val
                    .get(1..token.val.len().saturating_sub(1))
                    .unwrap_or("");
                // Go drops carriage returns from raw strings.
                let value = inner.replace('\r', "");
                Operand::String {
                    pos,
                    quoted: token.val,
                    value,
                }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

/// Go's literal number rules: integers (with 0x, 0o, 0b, 0 prefixes and
/// underscores) are ints; anything with `.`, `e` or `p` is a float64.
fn parse_number(text: &str) -> Option<Number> {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..)?),
        Some(b'+') => (false, text.get(1..)?),
        _ => (false, text),
    };
    let clean: String = body.chars().filter(|&c| c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let int = if let Some(hex) = lower.strip_prefix("0x") {
        u128::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = lower.strip_prefix("0o") {
        u128::from_str_radix(oct, 8).ok()
    } else if let Some(bin) = lower.strip_prefix("0b") {
        u128::from_str_radix(bin, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|b| b.is_ascii_digit())
    {
        u128::from_str_radix(&lower[1..], 8).ok()
    } else if !lower.is_empty() && lower.bytes().all(|b| b.is_ascii_digit()) {
        lower.parse::<u128>().ok()
    } else {
        None
    };
    let is_hex = lower.starts_with("0x");
    let floaty = !is_hex && lower.contains(['.', 'e', 'p']);
    if let Some(u) = int.filter(|_| !floaty) {
        let signed = i128::try_from(u)
            .ok()
            .map(|v| if negative { -v } else { v });
        return Some(match signed.and_then(|v| i64::try_from(v).ok()) {
            Some(v) => Number::Int(v),
            None => Number::Overflow,
        });
    }
    if is_hex || lower.starts_with("0o") || lower.starts_with("0b") {
        return None;
    }
    if !lower
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'))
    {
        return None;
    }
    let f: f64 = clean.parse().ok()?;
    let f = if negative { -f } else { f };
    if !floaty && f.fract() == 0.0 && f.abs() < 9.2e18 {
        #[expect(clippy::cast_possible_truncation, reason = "integral and in range")]
        return Some(Number::Int(f as i64));
    }
    f.is_finite().then_some(Number::Float(f))
}

/// Go's `strconv.Unquote` for `"..."` and `'...'` literals.
fn unquote(quoted: &str, quote: char) -> Option<String> {
    let inner = quoted.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == quote || c == '\n' {
            return None;
        }
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            'a' => Some(7u8),
            'b' => Some(8),
            'f' => Some(12),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            '"' | '\'' if e == quote => Some(e as u8),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Option<u32> {
            let digits: String = chars.by_ref().take(n).collect();
            if digits.len() != n {
                return None;
            }
            u32::from_str_radix(&digits, 16).ok()
        };
        match e {
            'x' => out.push(u8::try_from(hex(&mut chars, 2)?).ok()?),
            'u' | 'U' => {
                let c = char::from_u32(hex(&mut chars, if e == 'u' { 4 } else { 8 })?)?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                if rest.len() != 2 {
                    return None;
                }
                let v = u32::from_str_radix(&format!("{e}{rest}"), 8).ok()?;
                out.push(u8::try_from(v).ok()?);
            }
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Parses a template into its node list.
pub(super) fn parse(text: &str, builtins: &[&str]) -> Result<Vec<Node>> {
    let mut parser = Parser {
        text,
        tokens: lex(text),
        next: 0,
        last_pos: 0,
        action_pos: None,
        vars: vec!["$".to_owned()],
        range_depth: 0,
        depth: 0,
        builtins,
    };
    parser.parse()
}
