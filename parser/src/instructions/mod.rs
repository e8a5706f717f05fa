//! AST nodes to typed instructions, grouped into stages, as BuildKit's
//! `instructions.Parse` does: argument counts, every flag of every
//! instruction, heredoc sources, HEALTHCHECK options, ONBUILD triggers.
//!
//! Words stay unexpanded here; `crate::plan` expands them in their stage's
//! scope.

mod flags;

use serde::Serialize;

use crate::ast::{self, Args, Dockerfile, Heredoc, Node, Word};
use crate::error::{Error, ErrorKind};
use crate::mount::{self, DeferredMount, NetworkMode, SecurityMode};
use crate::source::Span;
use crate::values::duration::parse_duration;
use flags::{FlagKind, FlagSpec, Flags, parse_flags};

/// The 18 instruction names, lowercase, alphabetical.
pub const INSTRUCTION_NAMES: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// One typed instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// What the instruction does.
    #[serde(flatten)]
    pub kind: InstructionKind,
    /// The instruction name's span.
    pub span: Span,
    /// First line (1-based).
    pub start_line: usize,
    /// Last line, heredoc bodies included.
    pub end_line: usize,
    /// The source text of the instruction line, trimmed.
    pub code: String,
}

/// A command line of RUN, CMD, ENTRYPOINT or HEALTHCHECK CMD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandLine {
    /// Exec form: the argv; shell form: one element, the command text.
    pub args: Vec<Word>,
    /// Shell form: the command is run through the SHELL.
    pub prepend_shell: bool,
}

impl CommandLine {
    /// The arguments as strings.
    pub fn strings(&self) -> Vec<String> {
        self.args.iter().map(|w| w.value.clone()).collect()
    }
}

/// A `key=value` of ENV or LABEL, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pair {
    /// Key as written.
    pub key: Word,
    /// Value as written (quotes removed at expansion).
    pub value: Word,
    /// Legacy `key value` form (no `=`).
    pub legacy: bool,
}

/// An inline file of COPY/ADD from a heredoc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineSource {
    /// The heredoc name, used as the file name.
    pub name: String,
    /// The body (tabs already stripped for `<<-`).
    pub content: String,
    /// Whether variables in the body are expanded.
    pub expand: bool,
    /// Where the marker is.
    pub span: Span,
}

/// Sources and destination of COPY/ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Files {
    /// Source paths, patterns or URLs.
    pub sources: Vec<Word>,
    /// Heredoc sources.
    pub inline: Vec<InlineSource>,
    /// The destination.
    pub dest: Word,
}

/// `FROM [--platform=p] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    /// The base image or stage, unexpanded.
    pub image: Word,
    /// The stage name, lowercased, with the span of the name as written.
    pub name: Option<Word>,
    /// `--platform`.
    pub platform: Option<Word>,
}

/// One `--mount` of RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountFlag {
    /// The raw flag value.
    pub raw: Word,
    /// `from=` as known before expansion (used for the stage graph).
    pub from: Option<String>,
}

/// `RUN [--mount=...] [--network=...] [--security=...] command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The command.
    pub command: CommandLine,
    /// Heredocs on the line.
    pub heredocs: Vec<Heredoc>,
    /// `--mount` flags, in order.
    pub mounts: Vec<MountFlag>,
    /// `--network`.
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<SecurityMode>,
}

impl Run {
    /// The command RUN runs, with heredocs applied as BuildKit does: a
    /// command that is a single heredoc is the script itself (executed as
    /// `/dev/pipes/<name>` when it starts with `#!`, see
    /// [`Run::script_file`]); otherwise the heredoc bodies are appended to
    /// the command for the shell to read.
    pub fn effective_command(&self) -> Vec<String> {
        let args = self.command.strings();
        let Some(first) = self.heredocs.first() else {
            return args;
        };
        let [only] = args.as_slice() else {
            return args;
        };
        if ast::parse_heredoc_marker(only).ok().flatten().is_some() {
            if first.body().starts_with("#!") {
                return vec![format!("/dev/pipes/{}", first.name)];
            }
            return vec![first.body()];
        }
        let mut full = only.clone();
        for doc in &self.heredocs {
            full.push('\n');
            full.push_str(&doc.content);
            full.push_str(&doc.name);
        }
        vec![full]
    }

    /// When the command is a single heredoc, what BuildKit's progress
    /// name adds after the instruction (`summarizeHeredoc`): the first line
    /// of the trimmed body, with `...` when there are more.
    pub fn heredoc_summary(&self) -> Option<String> {
        let first = self.heredocs.first()?;
        let args = self.command.strings();
        let [only] = args.as_slice() else {
            return None;
        };
        ast::parse_heredoc_marker(only).ok().flatten()?;
        let body = first.content.trim().replace("\r\n", "\n");
        let mut lines = body.split('\n');
        let summary = lines.next().unwrap_or_default().to_owned();
        Some(if lines.next().is_some() {
            summary + "..."
        } else {
            summary
        })
    }

    /// When the command is a single heredoc starting with `#!`, the file
    /// to create (name, body, mode 0755) at `/dev/pipes/` and execute.
    pub fn script_file(&self) -> Option<(String, String)> {
        let first = self.heredocs.first()?;
        let args = self.command.strings();
        let [only] = args.as_slice() else {
            return None;
        };
        ast::parse_heredoc_marker(only).ok().flatten()?;
        let body = first.body();
        body.starts_with("#!").then(|| (first.name.clone(), body))
    }
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// What to copy where.
    pub files: Files,
    /// `--from`: a stage name, index or image.
    pub from: Option<Word>,
    /// `--chown`.
    pub chown: Option<Word>,
    /// `--chmod`.
    pub chmod: Option<Word>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<Word>,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    /// What to add where.
    pub files: Files,
    /// `--chown`.
    pub chown: Option<Word>,
    /// `--chmod`.
    pub chmod: Option<Word>,
    /// `--link`.
    pub link: bool,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--checksum`.
    pub checksum: Option<Word>,
    /// `--unpack`, when given.
    pub unpack: Option<bool>,
    /// `--exclude` patterns.
    pub excludes: Vec<Word>,
}

/// One name of `ARG name[=default] ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDefinition {
    /// The name.
    pub name: Word,
    /// The default, unexpanded.
    pub default: Option<Word>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`.
    None,
    /// `HEALTHCHECK [options] CMD ...`.
    Cmd {
        /// `["CMD", argv...]` or `["CMD-SHELL", command]`, as in the image
        /// config.
        test: Vec<String>,
        /// `--interval` in nanoseconds (0: default).
        interval: i64,
        /// `--timeout` in nanoseconds.
        timeout: i64,
        /// `--start-period` in nanoseconds.
        start_period: i64,
        /// `--start-interval` in nanoseconds.
        start_interval: i64,
        /// `--retries` (0: default).
        retries: i64,
    },
}

/// `ONBUILD instruction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    /// The trigger text as stored in the image config.
    pub expression: String,
    /// The trigger, parsed, when it parses (a trigger that does not is
    /// only an error when the image is used as a base, as in BuildKit).
    pub trigger: Option<Box<Instruction>>,
}

/// What an instruction does, with its arguments unexpanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "instruction")]
pub enum InstructionKind {
    /// `FROM`.
    From(From),
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `LABEL`.
    Label {
        /// The labels.
        pairs: Vec<Pair>,
    },
    /// `MAINTAINER`.
    Maintainer {
        /// The author.
        name: Word,
    },
    /// `EXPOSE`.
    Expose {
        /// Port specs, unexpanded.
        ports: Vec<Word>,
    },
    /// `ENV`.
    Env {
        /// The variables.
        pairs: Vec<Pair>,
    },
    /// `ADD`.
    Add(Add),
    /// `COPY`.
    Copy(Copy),
    /// `VOLUME`.
    Volume {
        /// Mount points.
        paths: Vec<Word>,
    },
    /// `USER`.
    User {
        /// `user[:group]`.
        user: Word,
    },
    /// `WORKDIR`.
    Workdir {
        /// The directory.
        path: Word,
    },
    /// `ARG`.
    Arg {
        /// The declarations.
        args: Vec<ArgDefinition>,
    },
    /// `ONBUILD`.
    Onbuild(Onbuild),
    /// `STOPSIGNAL`.
    Stopsignal {
        /// The signal.
        signal: Word,
    },
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `SHELL`.
    Shell {
        /// The shell argv.
        shell: Vec<Word>,
    },
}

impl InstructionKind {
    /// The instruction name, uppercase.
    pub fn name(&self) -> &'static str {
        match self {
            InstructionKind::From(_) => "FROM",
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Label { .. } => "LABEL",
            InstructionKind::Maintainer { .. } => "MAINTAINER",
            InstructionKind::Expose { .. } => "EXPOSE",
            InstructionKind::Env { .. } => "ENV",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Volume { .. } => "VOLUME",
            InstructionKind::User { .. } => "USER",
            InstructionKind::Workdir { .. } => "WORKDIR",
            InstructionKind::Arg { .. } => "ARG",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::Stopsignal { .. } => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Shell { .. } => "SHELL",
        }
    }
}

/// A stage: its FROM and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Index among the stages (0-based).
    pub index: usize,
    /// The FROM instruction.
    pub from: Instruction,
    /// The rest of the stage.
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The FROM arguments.
    pub fn from_args(&self) -> Option<&From> {
        match &self.from.kind {
            InstructionKind::From(f) => Some(f),
            _ => None,
        }
    }

    /// The stage name (lowercase), if it has one.
    pub fn name(&self) -> Option<&str> {
        self.from_args()
            .and_then(|f| f.name.as_ref())
            .map(|w| w.value.as_str())
    }
}

/// A Dockerfile as stages: the ARGs before the first FROM, then each
/// stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stages {
    /// `ARG`s before the first FROM.
    pub meta_args: Vec<Instruction>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// Problems that do not stop the build (e.g. an ONBUILD trigger that
    /// does not parse).
    pub warnings: Vec<ast::Warning>,
}

/// Turns the AST into stages of typed instructions.
pub fn parse_stages(df: &Dockerfile) -> Result<Stages, Error> {
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut warnings = Vec::new();
    for node in &df.nodes {
        let instruction = parse_instruction(df, node, &mut warnings)?;
        match (&instruction.kind, stages.last_mut()) {
            (InstructionKind::From(_), _) => stages.push(Stage {
                index: stages.len(),
                from: instruction,
                instructions: Vec::new(),
            }),
            (InstructionKind::Arg { .. }, None) => meta_args.push(instruction),
            (_, None) => {
                return Err(df
                    .error(node.keyword.span, ErrorKind::NoBuildStage)
                    .expecting("a FROM instruction before this one (only ARG may come before the first FROM)"));
            }
            (_, Some(stage)) => stage.instructions.push(instruction),
        }
    }
    Ok(Stages {
        meta_args,
        stages,
        warnings,
    })
}

/// Parses a text holding exactly one instruction: an ONBUILD trigger as
/// stored in an image config or declared by a base stage.
pub fn parse_single_instruction(text: &str) -> Result<Instruction, Error> {
    let df = ast::parse("ONBUILD trigger", text)?;
    let [node] = df.nodes.as_slice() else {
        let span = df
            .nodes
            .get(1)
            .map_or(Span::point(1, 1), |n| n.keyword.span);
        return Err(df.error(
            span,
            ErrorKind::InvalidValue {
                message: "onbuild trigger should be a single expression".to_owned(),
            },
        ));
    };
    let mut warnings = Vec::new();
    parse_instruction(&df, node, &mut warnings)
}

/// BuildKit's suggestion for an unknown instruction: the nearest name at
/// distance under 3, in the case the user wrote (BuildKit looks through a
/// map, so kiln breaks ties as `suggest::Order::Unordered` says).
pub(crate) fn suggest_instruction(name: &str) -> Option<String> {
    crate::suggest::nearest_ignoring_case(name, INSTRUCTION_NAMES, crate::suggest::Order::Unordered)
}

/// Builds one typed instruction from its node.
struct Request<'a> {
    df: &'a Dockerfile,
    node: &'a Node,
    args: Vec<Word>,
}

impl Request<'_> {
    fn error(&self, span: Span, kind: ErrorKind) -> Error {
        self.df.error(span, kind)
    }

    /// The span of the arguments (or of the instruction name when there
    /// are none).
    fn args_span(&self) -> Span {
        self.args.first().map_or(self.node.keyword.span, |w| w.span)
    }

    fn flags(&self, specs: &[FlagSpec]) -> Result<Flags, Error> {
        parse_flags(&self.node.flags, specs)
            .map_err(|(span, kind, expected)| self.error(span, kind).expecting(expected))
    }

    fn at_least_one(&self, instruction: &'static str) -> Result<(), Error> {
        if self.args.is_empty() {
            return Err(self
                .error(
                    self.node.keyword.span,
                    ErrorKind::AtLeastOneArgument { instruction },
                )
                .expecting(format!("an argument after {instruction}")));
        }
        Ok(())
    }

    fn exactly_one(&self, instruction: &'static str) -> Result<Word, Error> {
        match self.args.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(self
                .error(
                    self.node.keyword.span,
                    ErrorKind::ExactlyOneArgument { instruction },
                )
                .expecting(format!("one argument after {instruction}"))),
            [_, extra, ..] => Err(self
                .error(extra.span, ErrorKind::ExactlyOneArgument { instruction })
                .expecting("nothing more")),
        }
    }

    /// BuildKit's `handleJSONArgs`.
    fn command_line(&self, args: &[Word]) -> CommandLine {
        if self.node.json || args.is_empty() {
            return CommandLine {
                args: args.to_vec(),
                prepend_shell: !self.node.json,
            };
        }
        let joined: Vec<&str> = args.iter().map(|w| w.value.as_str()).collect();
        CommandLine {
            args: vec![Word {
                value: joined.join(" "),
                span: args[0].span,
            }],
            prepend_shell: true,
        }
    }
}

const fn flag(name: &'static str, kind: FlagKind) -> FlagSpec {
    FlagSpec { name, kind }
}

/// Parses one node into an instruction.
fn parse_instruction(
    df: &Dockerfile,
    node: &Node,
    warnings: &mut Vec<ast::Warning>,
) -> Result<Instruction, Error> {
    let request = Request {
        df,
        node,
        args: node.arg_words(),
    };
    let kind = match node.name().as_str() {
        "from" => parse_from(&request)?,
        "run" => parse_run(&request)?,
        "cmd" => {
            request.flags(&[])?;
            InstructionKind::Cmd(request.command_line(&request.args))
        }
        "entrypoint" => {
            request.flags(&[])?;
            InstructionKind::Entrypoint(request.command_line(&request.args))
        }
        "env" | "label" => parse_pairs(&request)?,
        "maintainer" => {
            let name = request.exactly_one("MAINTAINER")?;
            request.flags(&[])?;
            InstructionKind::Maintainer { name }
        }
        "expose" => {
            request.at_least_one("EXPOSE")?;
            request.flags(&[])?;
            let mut ports = request.args.clone();
            ports.sort_by(|a, b| a.value.cmp(&b.value));
            InstructionKind::Expose { ports }
        }
        "add" => parse_add(&request)?,
        "copy" => parse_copy(&request)?,
        "volume" => {
            request.at_least_one("VOLUME")?;
            request.flags(&[])?;
            let mut paths = Vec::new();
            for word in &request.args {
                let value = word.value.trim();
                if value.is_empty() {
                    return Err(request
                        .error(word.span, ErrorKind::EmptyVolume)
                        .expecting("a path"));
                }
                paths.push(Word {
                    value: value.to_owned(),
                    span: word.span,
                });
            }
            InstructionKind::Volume { paths }
        }
        "user" => {
            let user = request.exactly_one("USER")?;
            request.flags(&[])?;
            InstructionKind::User { user }
        }
        "workdir" => {
            let path = request.exactly_one("WORKDIR")?;
            request.flags(&[])?;
            InstructionKind::Workdir { path }
        }
        "arg" => parse_arg(&request)?,
        "onbuild" => parse_onbuild(&request, warnings)?,
        "stopsignal" => {
            let signal = request.exactly_one("STOPSIGNAL")?;
            request.flags(&[])?;
            InstructionKind::Stopsignal { signal }
        }
        "healthcheck" => parse_healthcheck(&request)?,
        "shell" => {
            request.flags(&[])?;
            let command = request.command_line(&request.args);
            if command.args.is_empty() {
                return Err(request
                    .error(
                        node.keyword.span,
                        ErrorKind::AtLeastOneArgument {
                            instruction: "SHELL",
                        },
                    )
                    .expecting("a JSON array such as [\"/bin/bash\", \"-c\"]"));
            }
            if !node.json {
                return Err(request
                    .error(
                        request.args_span(),
                        ErrorKind::NotJson {
                            instruction: "SHELL",
                        },
                    )
                    .expecting("a JSON array such as [\"/bin/bash\", \"-c\"]"));
            }
            InstructionKind::Shell {
                shell: command.args,
            }
        }
        _ => {
            let suggestion = suggest_instruction(&node.keyword.value);
            return Err(request
                .error(
                    node.keyword.span,
                    ErrorKind::UnknownInstruction {
                        name: node.keyword.value.clone(),
                        suggestion,
                    },
                )
                .expecting("an instruction: one of ADD, ARG, CMD, COPY, ENTRYPOINT, ENV, EXPOSE, FROM, HEALTHCHECK, LABEL, MAINTAINER, ONBUILD, RUN, SHELL, STOPSIGNAL, USER, VOLUME, WORKDIR"));
        }
    };
    Ok(Instruction {
        kind,
        span: node.keyword.span,
        start_line: node.start_line,
        end_line: node.end_line,
        code: node.original.trim().to_owned(),
    })
}

/// `^[a-z][a-z0-9-_.]*$`.
fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn parse_from(request: &Request<'_>) -> Result<InstructionKind, Error> {
    let name = match request.args.as_slice() {
        [_] => None,
        [_, as_word, name] if as_word.value.eq_ignore_ascii_case("as") => {
            let lower = name.value.to_lowercase();
            if !is_valid_stage_name(&lower) {
                return Err(request
                    .error(
                        name.span,
                        ErrorKind::InvalidStageName {
                            name: name.value.clone(),
                        },
                    )
                    .expecting("a name of lowercase letters, digits, '-', '_' and '.', starting with a letter"));
            }
            Some(Word {
                value: lower,
                span: name.span,
            })
        }
        args => {
            let span = args.get(1).map_or(request.node.keyword.span, |w| w.span);
            return Err(request
                .error(span, ErrorKind::FromArguments)
                .expecting("FROM <image> or FROM <image> AS <name>"));
        }
    };
    let flags = request.flags(&[flag("platform", FlagKind::String)])?;
    Ok(InstructionKind::From(From {
        image: request.args[0].clone(),
        name,
        platform: flags.string("platform").cloned(),
    }))
}

fn parse_run(request: &Request<'_>) -> Result<InstructionKind, Error> {
    let flags = request.flags(&[
        flag("mount", FlagKind::Strings),
        flag("network", FlagKind::String),
        flag("security", FlagKind::String),
    ])?;
    let mut mounts = Vec::new();
    for raw in flags.strings("mount") {
        let parsed: DeferredMount = mount::parse_mount_deferred(&raw.value).map_err(|e| {
            let span = e
                .span()
                .map_or(raw.span, |s| offset_span(raw.span, s.start, s.end));
            request
                .error(
                    span,
                    ErrorKind::InvalidValue {
                        message: e.to_string(),
                    },
                )
                .expecting("type=bind|cache|tmpfs|secret|ssh followed by key=value options")
        })?;
        mounts.push(MountFlag {
            from: parsed.from,
            raw,
        });
    }
    let network = flags
        .string("network")
        .map(|w| {
            mount::parse_network(&w.value).map_err(|e| {
                request
                    .error(
                        w.span,
                        ErrorKind::InvalidValue {
                            message: e.to_string(),
                        },
                    )
                    .expecting("default, none or host")
            })
        })
        .transpose()?;
    let security = flags
        .string("security")
        .map(|w| {
            mount::parse_security(&w.value).map_err(|e| {
                request
                    .error(
                        w.span,
                        ErrorKind::InvalidValue {
                            message: e.to_string(),
                        },
                    )
                    .expecting("sandbox or insecure")
            })
        })
        .transpose()?;
    Ok(InstructionKind::Run(Run {
        command: request.command_line(&request.args),
        heredocs: request.node.heredocs.clone(),
        mounts,
        network,
        security,
    }))
}

/// The span of bytes `start..end` inside a word's span (single-line).
pub(crate) fn offset_span(word: Span, start: usize, end: usize) -> Span {
    Span {
        line: word.line,
        column: word.column + start,
        width: end.saturating_sub(start).max(1),
    }
}

fn parse_pairs(request: &Request<'_>) -> Result<InstructionKind, Error> {
    let is_env = request.node.name() == "env";
    let instruction = if is_env { "ENV" } else { "LABEL" };
    request.flags(&[])?;
    let Args::KeyValues(raw_pairs) = &request.node.args else {
        return Err(request
            .error(
                request.node.keyword.span,
                ErrorKind::AtLeastOneArgument { instruction },
            )
            .expecting("name=value"));
    };
    let mut pairs = Vec::new();
    for kv in raw_pairs {
        if kv.key.value.is_empty() {
            return Err(request
                .error(kv.key.span, ErrorKind::BlankName { instruction })
                .expecting("a name before '='"));
        }
        pairs.push(Pair {
            key: kv.key.clone(),
            value: kv.value.clone(),
            legacy: !kv.has_equals,
        });
    }
    Ok(if is_env {
        InstructionKind::Env { pairs }
    } else {
        InstructionKind::Label { pairs }
    })
}

fn parse_files(request: &Request<'_>, instruction: &'static str) -> Result<Files, Error> {
    let Some((dest, sources)) = request.args.split_last() else {
        return Err(no_destination(request, instruction));
    };
    if sources.is_empty() {
        return Err(no_destination(request, instruction));
    }
    if ast::parse_heredoc_marker(&dest.value)
        .ok()
        .flatten()
        .is_some()
    {
        return Err(request
            .error(dest.span, ErrorKind::HeredocDestination { instruction })
            .expecting("a destination path as the last argument"));
    }
    let mut paths = Vec::new();
    let mut inline = Vec::new();
    for source in sources {
        match ast::parse_heredoc_marker(&source.value).ok().flatten() {
            Some(marker) => {
                let doc = request
                    .node
                    .heredocs
                    .iter()
                    .rev()
                    .find(|d| d.name == marker.name);
                inline.push(InlineSource {
                    name: marker.name.clone(),
                    content: doc.map(Heredoc::body).unwrap_or_default(),
                    expand: marker.expand,
                    span: source.span,
                });
            }
            None => paths.push(source.clone()),
        }
    }
    Ok(Files {
        sources: paths,
        inline,
        dest: dest.clone(),
    })
}

fn no_destination(request: &Request<'_>, instruction: &'static str) -> Error {
    request
        .error(
            request.args_span(),
            ErrorKind::NoDestination { instruction },
        )
        .expecting(format!("{instruction} <source>... <destination>"))
}

fn parse_copy(request: &Request<'_>) -> Result<InstructionKind, Error> {
    if request.args.len() < 2 {
        return Err(no_destination(request, "COPY"));
    }
    let flags = request.flags(&[
        flag("exclude", FlagKind::Strings),
        flag("parents", FlagKind::Bool),
        flag("chown", FlagKind::String),
        flag("from", FlagKind::String),
        flag("chmod", FlagKind::String),
        flag("link", FlagKind::Bool),
    ])?;
    let files = parse_files(request, "COPY")?;
    Ok(InstructionKind::Copy(Copy {
        files,
        from: flags.string("from").cloned(),
        chown: flags.string("chown").cloned(),
        chmod: flags.string("chmod").cloned(),
        link: flags.bool("link").unwrap_or(false),
        parents: flags.bool("parents").unwrap_or(false),
        excludes: flags.strings("exclude"),
    }))
}

fn parse_add(request: &Request<'_>) -> Result<InstructionKind, Error> {
    if request.args.len() < 2 {
        return Err(no_destination(request, "ADD"));
    }
    let flags = request.flags(&[
        flag("exclude", FlagKind::Strings),
        flag("chown", FlagKind::String),
        flag("chmod", FlagKind::String),
        flag("link", FlagKind::Bool),
        flag("keep-git-dir", FlagKind::Bool),
        flag("checksum", FlagKind::String),
        flag("unpack", FlagKind::Bool),
    ])?;
    let files = parse_files(request, "ADD")?;
    Ok(InstructionKind::Add(Add {
        files,
        chown: flags.string("chown").cloned(),
        chmod: flags.string("chmod").cloned(),
        link: flags.bool("link").unwrap_or(false),
        keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
        checksum: flags.string("checksum").cloned(),
        unpack: flags.bool("unpack"),
        excludes: flags.strings("exclude"),
    }))
}

/// Characters that make an ARG name impossible to reference and that are
/// almost surely a mistake (quotes or `$` written around the name).
fn is_broken_arg_name(name: &str) -> bool {
    name.contains(['$', '"', '\'', '\\', '`', '{', '}'])
}

fn parse_arg(request: &Request<'_>) -> Result<InstructionKind, Error> {
    request.at_least_one("ARG")?;
    request.flags(&[])?;
    let mut args = Vec::new();
    for word in &request.args {
        let (name, default) = match word.value.split_once('=') {
            Some((name, value)) => {
                let name_width = name.chars().count();
                let value_span = Span {
                    line: word.span.line,
                    column: word.span.column + name_width + 1,
                    width: word.span.width.saturating_sub(name_width + 1).max(1),
                };
                (
                    Word {
                        value: name.to_owned(),
                        span: Span {
                            width: name_width.max(1),
                            ..word.span
                        },
                    },
                    Some(Word {
                        value: value.to_owned(),
                        span: value_span,
                    }),
                )
            }
            None => (word.clone(), None),
        };
        if name.value.is_empty() {
            return Err(request
                .error(word.span, ErrorKind::BlankName { instruction: "ARG" })
                .expecting("a name before '='"));
        }
        if is_broken_arg_name(&name.value) {
            return Err(request
                .error(
                    name.span,
                    ErrorKind::InvalidArgName {
                        name: name.value.clone(),
                    },
                )
                .expecting("ARG <name>[=<default>]"));
        }
        args.push(ArgDefinition { name, default });
    }
    Ok(InstructionKind::Arg { args })
}

fn parse_onbuild(
    request: &Request<'_>,
    warnings: &mut Vec<ast::Warning>,
) -> Result<InstructionKind, Error> {
    request.at_least_one("ONBUILD")?;
    request.flags(&[])?;
    let Args::Instruction(child) = &request.node.args else {
        return Err(request
            .error(
                request.node.keyword.span,
                ErrorKind::AtLeastOneArgument {
                    instruction: "ONBUILD",
                },
            )
            .expecting("an instruction after ONBUILD"));
    };
    let trigger_name = child.keyword.value.trim().to_uppercase();
    match trigger_name.as_str() {
        "ONBUILD" => {
            return Err(request
                .error(child.keyword.span, ErrorKind::OnbuildChain)
                .expecting("an instruction other than ONBUILD"));
        }
        "MAINTAINER" | "FROM" => {
            return Err(request
                .error(
                    child.keyword.span,
                    ErrorKind::OnbuildTrigger {
                        instruction: trigger_name,
                    },
                )
                .expecting("an instruction other than FROM or MAINTAINER"));
        }
        _ => {}
    }
    let mut expression = strip_onbuild_prefix(&request.node.original).to_owned();
    for doc in &request.node.heredocs {
        expression.push('\n');
        expression.push_str(&doc.content);
        expression.push_str(&doc.name);
    }
    let mut child = (**child).clone();
    child.heredocs.clone_from(&request.node.heredocs);
    child.start_line = request.node.start_line;
    child.end_line = request.node.end_line;
    let trigger = match parse_instruction(request.df, &child, warnings) {
        Ok(instruction) => Some(Box::new(instruction)),
        Err(e) => {
            warnings.push(ast::Warning {
                rule: "InvalidOnbuildTrigger",
                message: format!(
                    "ONBUILD trigger will fail when the image is used: {}",
                    e.kind
                ),
                span: e.span,
            });
            None
        }
    };
    Ok(InstructionKind::Onbuild(Onbuild {
        expression,
        trigger,
    }))
}

/// `(?i)^\s*ONBUILD\s*` removed.
fn strip_onbuild_prefix(original: &str) -> &str {
    let trimmed = original.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\u{b}');
    match trimmed.get(..7) {
        Some(word) if word.eq_ignore_ascii_case("onbuild") => trimmed
            .get(7..)
            .unwrap_or("")
            .trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\u{b}'),
        _ => original,
    }
}

fn parse_healthcheck(request: &Request<'_>) -> Result<InstructionKind, Error> {
    request.at_least_one("HEALTHCHECK")?;
    let kind_word = &request.args[0];
    let kind = kind_word.value.to_uppercase();
    let rest = &request.args[1..];
    if kind == "NONE" {
        if let Some(extra) = rest.first() {
            return Err(request
                .error(extra.span, ErrorKind::HealthcheckNoneArguments)
                .expecting("nothing after NONE"));
        }
        return Ok(InstructionKind::Healthcheck(Healthcheck::None));
    }
    let flags = request.flags(&[
        flag("interval", FlagKind::String),
        flag("timeout", FlagKind::String),
        flag("start-period", FlagKind::String),
        flag("start-interval", FlagKind::String),
        flag("retries", FlagKind::String),
    ])?;
    if kind != "CMD" {
        return Err(request
            .error(kind_word.span, ErrorKind::HealthcheckType { kind })
            .expecting("CMD or NONE"));
    }
    let command = request.command_line(rest);
    if command.args.is_empty() {
        return Err(request
            .error(kind_word.span, ErrorKind::HealthcheckMissingCommand)
            .expecting("a command after CMD"));
    }
    let mut test = vec![
        if request.node.json {
            "CMD"
        } else {
            "CMD-SHELL"
        }
        .to_owned(),
    ];
    test.extend(command.strings());
    let interval = |name: &str| -> Result<i64, Error> {
        let Some(word) = flags.string(name) else {
            return Ok(0);
        };
        if word.value.is_empty() {
            return Ok(0);
        }
        let nanos = parse_duration(&word.value).map_err(|e| {
            request
                .error(
                    word.span,
                    ErrorKind::InvalidDuration {
                        message: e.to_string(),
                    },
                )
                .expecting("a duration such as 30s, 1m30s or 500ms")
        })?;
        if nanos != 0 && nanos < 1_000_000 {
            return Err(request
                .error(
                    word.span,
                    ErrorKind::IntervalTooShort {
                        flag: name.to_owned(),
                    },
                )
                .expecting("0 or at least 1ms"));
        }
        Ok(nanos)
    };
    let retries = match flags.string("retries") {
        None => 0,
        Some(word) if word.value.is_empty() => 0,
        Some(word) => {
            let value = crate::golang::parse_int(&word.value, 32).map_err(|e| {
                request
                    .error(
                        word.span,
                        ErrorKind::InvalidRetries {
                            value: word.value.clone(),
                            reason: e.as_str(),
                        },
                    )
                    .expecting("a whole number")
            })?;
            if value < 0 {
                return Err(request
                    .error(word.span, ErrorKind::NegativeRetries { value })
                    .expecting("0 or more"));
            }
            value
        }
    };
    Ok(InstructionKind::Healthcheck(Healthcheck::Cmd {
        test,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    }))
}

#[cfg(test)]
mod tests;
