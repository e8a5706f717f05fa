//! Variable expansion in each stage's scope, instruction by instruction,
//! exactly where BuildKit expands: ADD, COPY, ENV, EXPOSE, FROM, LABEL,
//! STOPSIGNAL, USER, VOLUME, WORKDIR, ARG defaults and RUN mounts. RUN,
//! CMD and ENTRYPOINT are left to the shell.

use std::collections::{BTreeMap, BTreeSet};

use super::graph::{Contexts, Graph, Source, instruction_sources, stage_label};
use super::{
    BaseConfig, DEFAULT_PATH, Environment, FileCopy, InlineFile, PlanOptions, PlannedMount,
    PlannedStage, Step, StepKind,
};
use crate::ast::{Dockerfile, Warning, Word};
use crate::error::{Error, ErrorKind};
use crate::instructions::{
    Add, Copy, Files, Instruction, InstructionKind, Pair, Stage, offset_span,
    parse_single_instruction,
};
use crate::mount::{self, NetworkMode, SecurityMode};
use crate::plan::graph::Base;
use crate::shell::{EnvLookup, Expansion, Lexer, ShellError};
use crate::source::Span;
use crate::values::{Platform, parse_chmod, parse_port_specs, parse_signal};

/// The automatic ARGs of the global scope (BuildKit's `defaultArgs`): the
/// platform ARGs and `TARGETSTAGE`.
pub(crate) const PREDEFINED_ARGS: [&str; 9] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
];

/// ARGs that never become environment variables (BuildKit's `nonEnvArgs`).
const NON_ENV_ARGS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// The predefined ARGs, each overridable by a build arg. Like every
/// global ARG they reach a stage only through an `ARG NAME` there.
/// `TARGETSTAGE` is the stage being built: `--target` as given, else the
/// last stage's name, else `default` (moby/buildkit#5431).
pub(crate) fn predefined_args(
    build: &Platform,
    target: &Platform,
    target_stage: Option<&str>,
    build_args: &BTreeMap<String, String>,
) -> Environment {
    let values = [
        build.to_string(),
        build.os.clone(),
        build.architecture.clone(),
        build.variant.clone(),
        target.to_string(),
        target.os.clone(),
        target.architecture.clone(),
        target.variant.clone(),
        target_stage.unwrap_or("default").to_owned(),
    ];
    let mut env = Environment::default();
    for (key, value) in PREDEFINED_ARGS.iter().zip(values) {
        let value = build_args.get(*key).cloned().unwrap_or(value);
        env.set(key, &value);
    }
    env
}

impl Step {
    /// The name BuildKit gives the step's operation in progress output
    /// (dockerfile2llb's `uppercaseCmd(processCmdEnv(...))` over the
    /// instruction's text), given the variables the step runs with and
    /// the Dockerfile's escape character:
    /// - COPY, ADD and WORKDIR: the whole instruction expanded as one
    ///   word, as their arguments are (quotes and escapes processed, unset
    ///   variables empty);
    /// - RUN: expanded with quotes kept and unset variables left as
    ///   written (the command is the shell's to expand), the variable of
    ///   every `env=` secret mount shown as `****`, and a command that is a
    ///   single heredoc followed by ` (first line...)` of its body;
    /// - anything else: as written.
    ///
    /// If the expansion fails the text stays as written. The first word
    /// (the keyword) is upper-cased. Named when the step runs, not when it
    /// is planned: only the steps that run pay for the expansion.
    pub fn name<E: EnvLookup + ?Sized>(&self, escape: char, env: &E) -> String {
        let code = &self.code;
        let mut lexer = Lexer::new(escape);
        let expanded = match &self.kind {
            StepKind::Run {
                mounts,
                heredoc_summary,
                ..
            } => {
                let text = match heredoc_summary {
                    Some(summary) => format!("{code} ({summary})"),
                    None => code.clone(),
                };
                lexer.raw_quotes = true;
                lexer.skip_unset_env = true;
                let secrets = mounts
                    .iter()
                    .filter(|m| m.mount.kind == mount::MountType::Secret)
                    .filter_map(|m| m.mount.env.as_deref())
                    .collect();
                match lexer.process_word(&text, &SecretsMasked { env, secrets }) {
                    Ok(e) => e.value,
                    Err(_) => text,
                }
            }
            StepKind::Copy(_) | StepKind::Add(_) | StepKind::Workdir { .. } => {
                let env = SecretsMasked {
                    env,
                    secrets: Vec::new(),
                };
                lexer
                    .process_word(code, &env)
                    .map_or_else(|_| code.clone(), |e| e.value)
            }
            _ => code.clone(),
        };
        // Go's `strings.SplitN(str, " ", 2)`: only a space ends the keyword.
        match expanded.split_once(' ') {
            Some((keyword, rest)) => format!("{} {rest}", crate::golang::to_upper(keyword)),
            None => crate::golang::to_upper(&expanded),
        }
    }
}

/// A step's environment in which the variables of `env=` secret mounts
/// read `****` (BuildKit's `withSecretEnvMask`): the name shows that the
/// value comes from a secret, whatever the stage holds under that name.
struct SecretsMasked<'a, E: ?Sized> {
    env: &'a E,
    secrets: Vec<&'a str>,
}

impl<E: EnvLookup + ?Sized> EnvLookup for SecretsMasked<'_, E> {
    fn lookup(&self, name: &str) -> Option<&str> {
        if self.secrets.contains(&name) {
            Some("****")
        } else {
            self.env.lookup(name)
        }
    }
}

/// Where in a word the lexer failed, as a span.
fn error_span(word: &Word, offset: usize) -> Span {
    word.span
        .skip(word.value.get(..offset).map_or(0, |s| s.chars().count()))
}

fn shell_error(df: &Dockerfile, word: &Word, error: &ShellError) -> Error {
    df.error(
        error_span(word, error.offset),
        ErrorKind::Expansion {
            message: error.to_string(),
        },
    )
    .expecting("a valid variable reference: $NAME, ${NAME}, ${NAME:-default}, ...")
}

/// Expands one word with `env`.
pub(crate) fn expand_word(
    df: &Dockerfile,
    lexer: &Lexer,
    word: &Word,
    env: &Environment,
) -> Result<Expansion, Error> {
    lexer
        .process_word(&word.value, env)
        .map_err(|e| shell_error(df, word, &e))
}

/// BuildKit's `buildMetaArgs`: the ARGs before the first FROM.
pub(crate) fn meta_args(
    df: &Dockerfile,
    meta: &[Instruction],
    build_args: &BTreeMap<String, String>,
    globals: &mut Environment,
    declared: &mut BTreeSet<String>,
) -> Result<(), Error> {
    let lexer = Lexer::new(df.escape);
    for instruction in meta {
        let InstructionKind::Arg { args } = &instruction.kind else {
            continue;
        };
        for arg in args {
            declared.insert(arg.name.value.clone());
            let value = match (build_args.get(&arg.name.value), &arg.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => Some(expand_word(df, &lexer, default, globals)?.value),
                (None, None) => None,
            };
            if let Some(value) = value {
                globals.set(&arg.name.value, &value);
            }
        }
    }
    Ok(())
}

/// The state of a stage while its instructions are expanded.
#[derive(Clone, Default)]
struct Scope {
    /// Variables visible to expansion and RUN (config env, ARGs, ENVs).
    env: Environment,
    /// The image config's `Env`: ENV instructions only, never ARGs.
    config_env: Environment,
    /// ARGs declared so far (inherited from a base stage too).
    build_args: Vec<String>,
    workdir: String,
    user: String,
    shell: Vec<String>,
    /// Whether the environment is fully known (false when the base image
    /// config was not available).
    env_known: bool,
}

/// Expands stage by stage.
pub(crate) struct Planner<'a> {
    df: &'a Dockerfile,
    options: &'a PlanOptions<'a>,
    globals: &'a Environment,
    graph: &'a mut Graph,
    warnings: &'a mut Vec<Warning>,
    lexer: Lexer,
}

impl<'a> Planner<'a> {
    pub fn new(
        df: &'a Dockerfile,
        options: &'a PlanOptions<'a>,
        globals: &'a Environment,
        graph: &'a mut Graph,
        warnings: &'a mut Vec<Warning>,
    ) -> Self {
        Planner {
            df,
            options,
            globals,
            graph,
            warnings,
            lexer: Lexer::new(df.escape),
        }
    }

    /// Plans every stage; only those `target` needs are expanded.
    pub fn run(
        &mut self,
        stages: &[Stage],
        target: usize,
        declared: &mut BTreeSet<String>,
    ) -> Result<Vec<PlannedStage>, Error> {
        let triggers = self.onbuild_triggers(stages, target)?;
        let needed = self.graph.needed(target);
        let mut scopes: Vec<Option<Scope>> = vec![None; stages.len()];
        let mut planned = Vec::with_capacity(stages.len());
        for stage in stages {
            let is_needed = needed.contains(&stage.index);
            let base = self
                .graph
                .bases
                .get(stage.index)
                .cloned()
                .unwrap_or(Base::Scratch);
            let mut steps = Vec::new();
            let replaced = self.graph.replaced.get(stage.index).cloned().flatten();
            if is_needed {
                let mut scope = self.initial_scope(&base, &scopes);
                // A stage a named context replaces runs nothing: its
                // scope is its base's.
                let run = replaced.is_none();
                let stage_triggers = triggers.get(&stage.index).cloned().unwrap_or_default();
                for (instruction, sources) in stage_triggers.iter().filter(|_| run) {
                    steps.push(self.step(
                        stages,
                        stage,
                        instruction,
                        sources,
                        &mut scope,
                        declared,
                        true,
                    )?);
                }
                for (position, instruction) in stage.instructions.iter().enumerate().filter(|_| run)
                {
                    let sources = self.sources_of(stage.index, position);
                    steps.push(self.step(
                        stages,
                        stage,
                        instruction,
                        &sources,
                        &mut scope,
                        declared,
                        false,
                    )?);
                }
                scopes[stage.index] = Some(scope);
            }
            let mut dependencies = Vec::new();
            if let Base::Stage { index } = base {
                dependencies.push(super::Dependency {
                    source: Source::Stage { index },
                    kind: super::DependencyKind::Base,
                    span: stage.from.span,
                    onbuild: false,
                });
            }
            dependencies.extend(
                self.graph
                    .deps
                    .get(stage.index)
                    .cloned()
                    .unwrap_or_default(),
            );
            planned.push(PlannedStage {
                index: stage.index,
                name: stage.name().map(str::to_owned),
                base,
                platform: self.graph.platforms.get(stage.index).cloned().flatten(),
                dependencies,
                needed: is_needed,
                context: replaced,
                from_code: stage.from.code.clone(),
                span: stage.from.span,
                steps,
                instructions: Vec::new(),
            });
        }
        Ok(planned)
    }

    /// Resolved sources of one instruction: COPY --from at key `None`,
    /// mounts at `Some(i)`.
    fn sources_of(&self, stage: usize, position: usize) -> BTreeMap<Option<usize>, Source> {
        self.graph
            .sources
            .get(&(stage, position))
            .cloned()
            .unwrap_or_default()
    }

    fn base_config(&self, reference: &str) -> Option<BaseConfig> {
        self.options.base_images.and_then(|b| b.config(reference))
    }

    /// ONBUILD triggers each needed stage runs first: those its base stage
    /// declared, or those in its base image's config. Their `--from`
    /// sources join the graph.
    #[expect(clippy::type_complexity, reason = "internal bookkeeping")]
    fn onbuild_triggers(
        &mut self,
        stages: &[Stage],
        target: usize,
    ) -> Result<BTreeMap<usize, Vec<(Instruction, BTreeMap<Option<usize>, Source>)>>, Error> {
        let mut out: BTreeMap<usize, Vec<(Instruction, BTreeMap<Option<usize>, Source>)>> =
            BTreeMap::new();
        loop {
            let mut added = false;
            for index in self.graph.needed(target) {
                if out.contains_key(&index) {
                    continue;
                }
                let Some(stage) = stages.get(index) else {
                    continue;
                };
                if self.graph.replaced.get(index).is_some_and(Option::is_some) {
                    out.insert(index, Vec::new());
                    continue;
                }
                let expressions: Vec<String> = match self.graph.bases.get(index) {
                    Some(Base::Stage { index: base }) => stages
                        .get(*base)
                        .map(|b| {
                            b.instructions
                                .iter()
                                .filter_map(|i| match &i.kind {
                                    InstructionKind::Onbuild(o) => Some(o.expression.clone()),
                                    _ => None,
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    Some(Base::Image { reference }) => self
                        .base_config(reference)
                        .map(|c| c.on_build)
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                let mut parsed = Vec::new();
                for expression in expressions {
                    let mut instruction = parse_single_instruction(&expression).map_err(|e| {
                        self.df
                            .error(
                                stage.from.span,
                                ErrorKind::InvalidValue {
                                    message: format!("ONBUILD trigger {expression:?}: {}", e.kind),
                                },
                            )
                            .expecting("the base's ONBUILD triggers to be valid instructions")
                    })?;
                    // errors in a trigger point at the FROM that runs it
                    instruction.span = stage.from.span;
                    instruction.start_line = stage.from.start_line;
                    instruction.end_line = stage.from.end_line;
                    let mut sources = BTreeMap::new();
                    for edge in instruction_sources(
                        self.df,
                        stages,
                        Contexts(&self.options.contexts),
                        &instruction,
                    )? {
                        let (source, kind) = (edge.source, edge.kind);
                        sources.insert(edge.mount, source.clone());
                        self.graph.deps[index].push(super::Dependency {
                            source,
                            kind,
                            span: stage.from.span,
                            onbuild: true,
                        });
                        added = true;
                    }
                    parsed.push((instruction, sources));
                }
                out.insert(index, parsed);
            }
            if !added {
                return Ok(out);
            }
        }
    }

    /// The scope a stage starts with: its base stage's final scope, or
    /// its base image's config (PATH defaulted as Docker does).
    fn initial_scope(&self, base: &Base, scopes: &[Option<Scope>]) -> Scope {
        let mut scope = match base {
            Base::Stage { index } => scopes.get(*index).cloned().flatten().unwrap_or_default(),
            Base::Scratch | Base::Context { .. } => Scope {
                env_known: true,
                ..Scope::default()
            },
            Base::Image { reference } => match self.base_config(reference) {
                Some(config) => Scope {
                    env: Environment::from_strings(&config.env),
                    config_env: Environment::from_strings(&config.env),
                    build_args: Vec::new(),
                    workdir: config.working_dir,
                    user: config.user,
                    shell: config.shell,
                    env_known: true,
                },
                None => Scope::default(),
            },
        };
        // BuildKit defaults PATH in the image config, then applies the config
        // env over the inherited state: in a stage built on another stage,
        // an ENV of the base wins over a later ARG of the same name.
        if scope.config_env.get("PATH").is_none() {
            scope.config_env.set("PATH", DEFAULT_PATH);
        }
        let config_env = scope.config_env.clone();
        for (key, value) in config_env.vars() {
            scope.env.set(key, value);
        }
        if scope.workdir.is_empty() {
            "/".clone_into(&mut scope.workdir);
        }
        scope
    }

    fn expand(&mut self, word: &Word, scope: &Scope) -> Result<String, Error> {
        let expansion = expand_word(self.df, &self.lexer, word, &scope.env)?;
        self.report_unmatched(&expansion, scope, word.span);
        Ok(expansion.value)
    }

    /// ENV/LABEL pairs, keys and values expanded against `scope` as it was
    /// before the instruction.
    fn expand_pairs(
        &mut self,
        pairs: &[Pair],
        scope: &Scope,
    ) -> Result<Vec<(String, String)>, Error> {
        pairs
            .iter()
            .map(|p| Ok((self.expand(&p.key, scope)?, self.expand(&p.value, scope)?)))
            .collect()
    }

    fn expand_opt(&mut self, word: Option<&Word>, scope: &Scope) -> Result<Option<String>, Error> {
        word.map(|w| self.expand(w, scope)).transpose()
    }

    /// BuildKit's `UndefinedVar` check.
    fn report_unmatched(&mut self, expansion: &Expansion, scope: &Scope, span: Span) {
        if !scope.env_known {
            return;
        }
        for name in &expansion.unmatched {
            if scope.build_args.iter().any(|a| a == name) || NON_ENV_ARGS.contains(&name.as_str()) {
                continue;
            }
            self.warnings.push(Warning {
                rule: "UndefinedVar",
                message: format!("Usage of undefined variable '${name}'"),
                span,
            });
        }
    }

    /// The argv of a shell-form command: SHELL (or `/bin/sh -c`) + text.
    fn with_shell(scope: &Scope, args: &[String]) -> Vec<String> {
        let mut command = if scope.shell.is_empty() {
            vec!["/bin/sh".to_owned(), "-c".to_owned()]
        } else {
            scope.shell.clone()
        };
        command.push(args.join(" "));
        command
    }

    #[expect(clippy::too_many_arguments, reason = "the state of one expansion step")]
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per instruction reads best together"
    )]
    fn step(
        &mut self,
        stages: &[Stage],
        stage: &Stage,
        instruction: &Instruction,
        sources: &BTreeMap<Option<usize>, Source>,
        scope: &mut Scope,
        declared: &mut BTreeSet<String>,
        onbuild: bool,
    ) -> Result<Step, Error> {
        let df = self.df;
        let kind = match &instruction.kind {
            InstructionKind::From(_) => {
                return Err(df.error(
                    instruction.span,
                    ErrorKind::InvalidValue {
                        message: "FROM is not allowed here".to_owned(),
                    },
                ));
            }
            InstructionKind::Arg { args } => {
                let mut out = Vec::new();
                for arg in args {
                    let name = arg.name.value.clone();
                    declared.insert(name.clone());
                    let build_value = self.options.build_args.get(&name).cloned();
                    let value = match (&build_value, &arg.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(default)) => Some(self.expand(default, scope)?),
                        (None, None) => self.globals.get(&name).map(str::to_owned),
                    };
                    if let Some(v) = &value
                        && !NON_ENV_ARGS.contains(&name.as_str())
                    {
                        scope.env.set(&name, v);
                    }
                    scope.build_args.push(name.clone());
                    out.push((name, value));
                }
                StepKind::Arg { args: out }
            }
            InstructionKind::Env { pairs } => {
                // every pair sees the environment from before the instruction
                let out = self.expand_pairs(pairs, scope)?;
                for (k, v) in &out {
                    scope.env.set(k, v);
                    scope.config_env.set(k, v);
                }
                StepKind::Env { pairs: out }
            }
            InstructionKind::Label { pairs } => StepKind::Label {
                pairs: self.expand_pairs(pairs, scope)?,
            },
            InstructionKind::Run(run) => {
                let mut mounts = Vec::new();
                for (i, flag) in run.mounts.iter().enumerate() {
                    let (lexer, env) = (&self.lexer, &scope.env);
                    let mut expander = |s: &str| lexer.process_word(s, env).map(|e| e.value);
                    let mount =
                        mount::parse_mount(&flag.raw.value, &mut expander).map_err(|e| {
                            let span = e.span().map_or(flag.raw.span, |s| {
                                offset_span(flag.raw.span, s.start, s.end)
                            });
                            df.error(
                                span,
                                ErrorKind::InvalidValue {
                                    message: e.to_string(),
                                },
                            )
                            .expecting(
                                "type=bind|cache|tmpfs|secret|ssh followed by key=value options",
                            )
                        })?;
                    let source = sources.get(&Some(i)).cloned();
                    if let Some(Source::Stage { index }) = &source
                        && *index >= stage.index
                    {
                        return Err(df
                            .error(
                                flag.raw.span,
                                ErrorKind::MountFromLaterStage {
                                    from: mount.from.clone().unwrap_or_default(),
                                    target: mount.target.clone().unwrap_or_default(),
                                },
                            )
                            .expecting("from= to name a stage defined above this one"));
                    }
                    mounts.push(PlannedMount { mount, source });
                }
                let command = run.effective_command();
                let argv = if run.command.prepend_shell {
                    Self::with_shell(scope, &command)
                } else {
                    command
                };
                StepKind::Run {
                    argv,
                    script: run.script_file(),
                    heredoc_summary: run.heredoc_summary(),
                    mounts,
                    network: run.network.unwrap_or(NetworkMode::Default),
                    security: run.security.unwrap_or(SecurityMode::Sandbox),
                    workdir: scope.workdir.clone(),
                    user: scope.user.clone(),
                }
            }
            InstructionKind::Cmd(command) => StepKind::Cmd {
                argv: if command.prepend_shell {
                    Self::with_shell(scope, &command.strings())
                } else {
                    command.strings()
                },
            },
            // A bare ENTRYPOINT is the shell form of nothing (`sh -c ""`)
            // in BuildKit; only `ENTRYPOINT []` clears it.
            InstructionKind::Entrypoint(command) => StepKind::Entrypoint {
                argv: if command.prepend_shell {
                    Self::with_shell(scope, &command.strings())
                } else {
                    command.strings()
                },
            },
            InstructionKind::Copy(copy) => {
                StepKind::Copy(self.copy(stages, stage, copy, sources, scope)?)
            }
            InstructionKind::Add(add) => StepKind::Add(self.add(add, scope)?),
            InstructionKind::Workdir { path } => {
                let expanded = self.expand(path, scope)?;
                scope.workdir = normalize_workdir(&scope.workdir, &expanded);
                StepKind::Workdir {
                    path: scope.workdir.clone(),
                }
            }
            InstructionKind::User { user } => {
                scope.user = self.expand(user, scope)?;
                StepKind::User {
                    user: scope.user.clone(),
                }
            }
            InstructionKind::Volume { paths } => {
                let mut out = Vec::new();
                for path in paths {
                    let value = self.expand(path, scope)?;
                    if value.is_empty() {
                        return Err(df
                            .error(path.span, ErrorKind::EmptyVolume)
                            .expecting("a path"));
                    }
                    out.push(value);
                }
                StepKind::Volume { paths: out }
            }
            InstructionKind::Expose { ports } => {
                let mut specs = Vec::new();
                for port in ports {
                    let words = self
                        .lexer
                        .process_words(&port.value, &scope.env)
                        .map_err(|e| shell_error(df, port, &e))?;
                    let canonical = parse_port_specs(&words).map_err(|e| {
                        df.error(port.span, ErrorKind::InvalidValue { message: e.to_string() })
                            .expecting("a port or range with an optional protocol: 80, 80/tcp, 53/udp, 8000-8010")
                    })?;
                    specs.extend(canonical);
                }
                specs.sort();
                specs.dedup();
                StepKind::Expose { ports: specs }
            }
            InstructionKind::Stopsignal { signal } => {
                let value = self.expand(signal, scope)?;
                parse_signal(&value).map_err(|e| {
                    df.error(
                        signal.span,
                        ErrorKind::InvalidValue {
                            message: e.to_string(),
                        },
                    )
                    .expecting("a signal name or number such as SIGTERM, SIGQUIT or 9")
                })?;
                StepKind::Stopsignal { signal: value }
            }
            InstructionKind::Healthcheck(h) => StepKind::Healthcheck(h.clone()),
            InstructionKind::Shell { shell } => {
                scope.shell = shell.iter().map(|w| w.value.clone()).collect();
                StepKind::Shell {
                    shell: scope.shell.clone(),
                }
            }
            InstructionKind::Maintainer { name } => StepKind::Maintainer {
                name: name.value.clone(),
            },
            InstructionKind::Onbuild(o) => StepKind::Onbuild {
                expression: o.expression.clone(),
            },
        };
        Ok(Step {
            kind,
            code: instruction.code.clone(),
            span: instruction.span,
            onbuild,
        })
    }

    fn files(
        &mut self,
        files: &Files,
        scope: &Scope,
    ) -> Result<(Vec<String>, Vec<InlineFile>, String), Error> {
        let mut sources = Vec::new();
        for source in &files.sources {
            sources.push(self.expand(source, scope)?);
        }
        let mut raw = Lexer::new('\\');
        raw.skip_process_quotes = true;
        let mut inline = Vec::new();
        for doc in &files.inline {
            let content = if doc.expand {
                raw.process_word(&doc.content, &scope.env)
                    .map_err(|e| {
                        self.df
                            .error(
                                doc.span,
                                ErrorKind::Expansion {
                                    message: e.to_string(),
                                },
                            )
                            .expecting(
                                "valid variable references in the heredoc, or a quoted delimiter",
                            )
                    })?
                    .value
            } else {
                doc.content.clone()
            };
            inline.push(InlineFile {
                name: doc.name.clone(),
                content,
            });
        }
        let dest = self.expand(&files.dest, scope)?;
        Ok((sources, inline, dest))
    }

    fn chmod(
        &mut self,
        word: Option<&Word>,
        scope: &Scope,
    ) -> Result<Option<crate::values::Chmod>, Error> {
        let Some(word) = word else { return Ok(None) };
        let value = self.expand(word, scope)?;
        parse_chmod(&value).map_err(|e| {
            self.df
                .error(
                    word.span,
                    ErrorKind::InvalidValue {
                        message: e.to_string(),
                    },
                )
                .expecting("an octal mode such as 755 or a symbolic one such as u+x,go-w")
        })
    }

    fn excludes(&mut self, words: &[Word], scope: &Scope) -> Result<Vec<String>, Error> {
        words.iter().map(|w| self.expand(w, scope)).collect()
    }

    fn copy(
        &mut self,
        stages: &[Stage],
        stage: &Stage,
        copy: &Copy,
        sources: &BTreeMap<Option<usize>, Source>,
        scope: &Scope,
    ) -> Result<FileCopy, Error> {
        let chown = self.expand_opt(copy.chown.as_ref(), scope)?;
        let chmod = self.chmod(copy.chmod.as_ref(), scope)?;
        let excludes = self.excludes(&copy.excludes, scope)?;
        let (paths, inline, dest) = self.files(&copy.files, scope)?;
        for (word, path) in copy.files.sources.iter().zip(&paths) {
            if crate::values::parse_git_ref(path).is_some() {
                return Err(self
                    .df
                    .error(
                        word.span,
                        ErrorKind::InvalidValue {
                            message: "source can't be a git ref for COPY".to_owned(),
                        },
                    )
                    .expecting("a path in the build context (use ADD for git repositories)"));
            }
            if is_url(path) {
                return Err(self
                    .df
                    .error(
                        word.span,
                        ErrorKind::InvalidValue {
                            message: "source can't be a URL for COPY".to_owned(),
                        },
                    )
                    .expecting("a path in the build context (use ADD for URLs)"));
            }
        }
        let from = sources.get(&None).cloned();
        if let (Some(Source::Stage { index }), Some(word)) = (&from, &copy.from)
            && *index >= stage.index
        {
            return Err(self
                .df
                .error(
                    word.span,
                    ErrorKind::CopyFromLaterStage {
                        from: word.value.clone(),
                        current: stage_label(stage),
                    },
                )
                .expecting(format!(
                    "--from to name a stage defined above this one (\"{}\" is on line {})",
                    word.value,
                    stages.get(*index).map_or(0, |s| s.from.start_line)
                )));
        }
        Ok(FileCopy {
            sources: paths,
            inline,
            dest,
            workdir: scope.workdir.clone(),
            from,
            chown,
            chmod,
            link: copy.link,
            parents: copy.parents,
            excludes,
            checksum: None,
            keep_git_dir: false,
            unpack: None,
            is_add: false,
        })
    }

    fn add(&mut self, add: &Add, scope: &Scope) -> Result<FileCopy, Error> {
        let chown = self.expand_opt(add.chown.as_ref(), scope)?;
        let chmod = self.chmod(add.chmod.as_ref(), scope)?;
        let checksum = self.expand_opt(add.checksum.as_ref(), scope)?;
        let excludes = self.excludes(&add.excludes, scope)?;
        let (paths, inline, dest) = self.files(&add.files, scope)?;
        // A git address with a query BuildKit refuses fails before the build.
        for (word, path) in add.files.sources.iter().zip(&paths) {
            if let Some(Err(e)) = crate::values::parse_git_ref(path) {
                return Err(self
                    .df
                    .error(
                        word.span,
                        ErrorKind::InvalidValue {
                            message: e.to_string(),
                        },
                    )
                    .expecting(
                        "a git address such as https://host/repo.git#ref:subdir or ?ref=...&subdir=...",
                    ));
            }
        }
        if let (Some(value), Some(word)) = (&checksum, &add.checksum) {
            let checksum_error = |message: String| {
                self.df
                    .error(word.span, ErrorKind::InvalidValue { message })
                    .expecting(
                        "--checksum=sha256:<64 hex digits> on an ADD of one http(s) URL, \
                     or a commit (or its prefix) on an ADD of one git repository",
                    )
            };
            if paths.len() != 1 || !add.files.inline.is_empty() {
                return Err(checksum_error(
                    "checksum can't be specified for multiple sources".to_owned(),
                ));
            }
            let git = paths.first().and_then(|p| crate::values::parse_git_ref(p));
            if let Some(Ok(git)) = &git {
                // The URL's own checksum must agree with the flag's.
                if let Some(own) = git.checksum.as_ref().filter(|own| *own != value) {
                    return Err(checksum_error(format!(
                        "checksum mismatch {value:?} != {own:?}"
                    )));
                }
            } else if !paths.first().is_some_and(|p| is_url(p)) {
                return Err(checksum_error(
                    "checksum requires HTTP(S) or Git sources".to_owned(),
                ));
            } else {
                crate::values::reference::Digest::parse(value)
                    .map_err(|e| checksum_error(e.to_string()))?;
            }
        }
        Ok(FileCopy {
            sources: paths,
            inline,
            dest,
            workdir: scope.workdir.clone(),
            from: None,
            chown,
            chmod,
            link: add.link,
            parents: false,
            excludes,
            checksum,
            keep_git_dir: add.keep_git_dir,
            unpack: add.unpack,
            is_add: true,
        })
    }
}

/// `http://` or `https://`.
pub(crate) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// BuildKit's `NormalizeWorkdir` on Linux: an absolute path is kept as
/// written, a relative one is joined to the current directory and
/// cleaned, an empty one keeps the current directory.
pub fn normalize_workdir(current: &str, path: &str) -> String {
    if path.is_empty() {
        current.to_owned()
    } else if path.starts_with('/') {
        path.to_owned()
    } else {
        crate::golang::path_clean(&format!("{current}/{path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdirs() {
        assert_eq!(normalize_workdir("/", "app"), "/app");
        assert_eq!(normalize_workdir("/app", "src/../lib"), "/app/lib");
        assert_eq!(normalize_workdir("/app", "/abs/./x/"), "/abs/./x/");
        assert_eq!(normalize_workdir("/app", ""), "/app");
        assert_eq!(normalize_workdir("/a", ".."), "/");
        assert_eq!(crate::golang::path_clean("/../.."), "/");
    }
}
