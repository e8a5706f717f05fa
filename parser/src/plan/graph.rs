//! The stage graph: bases, `COPY --from` and `RUN --mount from=` edges,
//! cycle detection and `--target` pruning.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::expand::expand_word;
use super::{Environment, NamedContext};
use crate::ast::{Dockerfile, Warning};
use crate::error::{Error, ErrorKind};
use crate::instructions::{Instruction, InstructionKind, Stage};
use crate::shell::{Lexer, NoEnv};
use crate::source::Span;
use crate::values::{Platform, parse_normalized_named, parse_platform};

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An earlier stage.
    Stage {
        /// Its index.
        index: usize,
    },
    /// An image.
    Image {
        /// Normalised reference (`docker.io/library/alpine:latest`).
        reference: String,
    },
    /// A local directory given with `--build-context NAME=DIR`.
    Context {
        /// The context's name.
        name: String,
    },
}

/// Where `COPY --from` or `RUN --mount from=` takes files from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Source {
    /// A stage of this Dockerfile.
    Stage {
        /// Its index.
        index: usize,
    },
    /// An image.
    Image {
        /// Normalised reference.
        reference: String,
    },
    /// `scratch`: nothing.
    Scratch,
    /// A local directory given with `--build-context NAME=DIR`.
    Context {
        /// The context's name.
        name: String,
    },
}

/// Why one stage needs another stage or an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyKind {
    /// `FROM`.
    Base,
    /// `COPY --from`.
    CopyFrom,
    /// `RUN --mount from=`.
    MountFrom,
}

/// An edge of the stage graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// What is needed.
    pub source: Source,
    /// How.
    pub kind: DependencyKind,
    /// The instruction that needs it.
    pub span: Span,
    /// Whether it comes from an ONBUILD trigger of the base.
    pub onbuild: bool,
}

/// The resolved graph.
pub(crate) struct Graph {
    pub bases: Vec<Base>,
    pub platforms: Vec<Option<Platform>>,
    /// Edges other than the base, per stage.
    pub deps: Vec<Vec<Dependency>>,
    /// Resolved `--from` sources per (stage, instruction index): key
    /// `None` for `COPY --from`, `Some(i)` for the i-th mount.
    pub sources: HashMap<(usize, usize), BTreeMap<Option<usize>, Source>>,
    /// Per stage, the named context that replaces it (its instructions
    /// are not run).
    pub replaced: Vec<Option<String>>,
}

/// The `--build-context` values of a build, by normalised name.
#[derive(Clone, Copy)]
pub(crate) struct Contexts<'a>(pub &'a BTreeMap<String, NamedContext>);

impl<'a> Contexts<'a> {
    /// The context `name` (a stage name, image reference or `--from`
    /// value) selects, as BuildKit's `NamedContext` looks it up: by the
    /// familiar form of the reference without `:latest`; `scratch` and
    /// `context` never name one.
    fn lookup(self, name: &str) -> Option<(String, &'a NamedContext)> {
        if self.0.is_empty()
            || name.eq_ignore_ascii_case("scratch")
            || name.eq_ignore_ascii_case("context")
        {
            return None;
        }
        let key = context_name(name).ok()?;
        self.0.get(&key).map(|c| (key, c))
    }

    fn base(self, name: &str) -> Option<(String, Base)> {
        self.lookup(name).map(|(key, c)| {
            let base = match c {
                NamedContext::Image { reference } => Base::Image {
                    reference: reference.clone(),
                },
                NamedContext::Local => Base::Context { name: key.clone() },
            };
            (key, base)
        })
    }

    fn source(self, name: &str) -> Option<Source> {
        self.lookup(name).map(|(key, c)| match c {
            NamedContext::Image { reference } => Source::Image {
                reference: reference.clone(),
            },
            NamedContext::Local => Source::Context { name: key },
        })
    }
}

/// The name a `--build-context NAME=...` is known by, as buildx and
/// BuildKit normalise it: parsed as an image reference (so lowercase),
/// in its familiar form, without `:latest` (`docker.io/library/alpine:latest`
/// and `alpine` are both `alpine`).
pub fn context_name(name: &str) -> Result<String, String> {
    let reference = parse_normalized_named(name).map_err(|e| e.to_string())?;
    let familiar = reference.familiar_string();
    Ok(familiar
        .strip_suffix(":latest")
        .map_or_else(|| familiar.clone(), str::to_owned))
}

/// The display name BuildKit uses in messages: the name or `stage-N`.
pub(crate) fn stage_label(stage: &Stage) -> String {
    stage
        .name()
        .map_or_else(|| format!("stage-{}", stage.index), str::to_owned)
}

/// Resolves a `--from` / `from=` value (BuildKit's `toCommand`).
pub(crate) fn resolve_source(
    df: &Dockerfile,
    stages: &[Stage],
    contexts: Contexts<'_>,
    value: &str,
    span: Span,
) -> Result<Source, Error> {
    if let Some(index) = crate::golang::atoi(value) {
        return match usize::try_from(index).ok().filter(|&i| i < stages.len()) {
            Some(i) => Ok(Source::Stage { index: i }),
            None => Err(df
                .error(
                    span,
                    ErrorKind::InvalidStageIndex {
                        index: index.to_string(),
                    },
                )
                .expecting(format!(
                    "a stage index from 0 to {}",
                    stages.len().saturating_sub(1)
                ))),
        };
    }
    let lower = value.to_lowercase();
    if let Some(stage) = stages.iter().find(|s| s.name() == Some(lower.as_str())) {
        return Ok(Source::Stage { index: stage.index });
    }
    if value == "scratch" {
        return Ok(Source::Scratch);
    }
    // BuildKit parses the name as an image reference before it looks for
    // a named context of that name.
    let reference = image_reference(df, value, span)?;
    Ok(contexts
        .source(value)
        .unwrap_or(Source::Image { reference }))
}

/// `reference.ParseNormalizedNamed` then `TagNameOnly`.
pub(crate) fn image_reference(df: &Dockerfile, name: &str, span: Span) -> Result<String, Error> {
    parse_normalized_named(name)
        .map(|r| r.tag_name_only().to_string())
        .map_err(|e| {
            df.error(
                span,
                ErrorKind::InvalidBaseName {
                    name: name.to_owned(),
                    message: e.to_string(),
                },
            )
            .expecting("an image reference such as alpine:3.20 or registry.example.com/team/app:1, or a stage name")
        })
}

impl Graph {
    /// Resolves bases (with global ARGs), platforms and `--from` edges of
    /// every stage, then checks for cycles.
    pub fn build(
        df: &Dockerfile,
        stages: &[Stage],
        globals: &Environment,
        contexts: Contexts<'_>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Graph, Error> {
        let lexer = Lexer::new(df.escape);
        let mut graph = Graph {
            bases: Vec::new(),
            platforms: Vec::new(),
            deps: vec![Vec::new(); stages.len()],
            sources: HashMap::new(),
            replaced: vec![None; stages.len()],
        };
        for stage in stages {
            let Some(from) = stage.from_args() else {
                continue;
            };
            let expanded = expand_word(df, &lexer, &from.image, globals)?;
            if expanded.value.is_empty() {
                return Err(df
                    .error(
                        from.image.span,
                        ErrorKind::BlankBaseName {
                            raw: from.image.value.clone(),
                        },
                    )
                    .expecting("an image name (is a build argument unset?)"));
            }
            let name = expanded.value;
            // A named context of the stage's name replaces the whole
            // stage (BuildKit's `buildDispatchStates`): its base is the
            // context and its instructions are not run.
            let replacement = stage.name().and_then(|n| contexts.base(n));
            // BuildKit matches the expanded name against earlier stage
            // names exactly (stage names are stored lowercase).
            let earlier = stages
                .iter()
                .take(stage.index)
                .find(|s| s.name() == Some(name.as_str()));
            let base = if let Some((context, base)) = replacement {
                graph.replaced[stage.index] = Some(context);
                base
            } else if let Some(earlier) = earlier {
                Base::Stage {
                    index: earlier.index,
                }
            } else if name == "scratch" {
                Base::Scratch
            } else if let Some((_, base)) = image_reference(df, &name, from.image.span)
                .ok()
                .and_then(|_| contexts.base(&name))
            {
                // `FROM alpine` with `--build-context alpine=...`.
                base
            } else {
                if let Some(later) = stages
                    .iter()
                    .skip(stage.index)
                    .find(|s| s.name() == Some(name.to_lowercase().as_str()))
                {
                    warnings.push(Warning {
                        rule: "FromLaterStage",
                        message: format!(
                            "FROM {name} names the image {name}, not the stage defined later on line {}",
                            later.from.start_line
                        ),
                        span: from.image.span,
                    });
                }
                Base::Image {
                    reference: image_reference(df, &name, from.image.span).map_err(|e| {
                        // `FROM Build` never matches stage `build` (BuildKit
                        // compares exactly); say so when that is the likely
                        // intent.
                        let lower = name.to_lowercase();
                        if stages
                            .iter()
                            .take(stage.index)
                            .any(|s| s.name() == Some(lower.as_str()))
                        {
                            e.expecting(format!(
                                "the stage name as declared, in lowercase: FROM {lower}"
                            ))
                        } else {
                            e
                        }
                    })?,
                }
            };
            graph.bases.push(base);
            let platform = match &from.platform {
                None => None,
                Some(word) => {
                    let value = expand_word(df, &lexer, word, globals)?.value;
                    if value.is_empty() {
                        return Err(df
                            .error(
                                word.span,
                                ErrorKind::EmptyPlatform {
                                    raw: word.value.clone(),
                                },
                            )
                            .expecting("a platform such as linux/amd64"));
                    }
                    Some(parse_platform(&value).map_err(|e| {
                        df.error(
                            word.span,
                            ErrorKind::InvalidPlatform {
                                raw: word.value.clone(),
                                message: e.to_string(),
                            },
                        )
                        .expecting("a platform such as linux/amd64 or linux/arm64/v8")
                    })?)
                }
            };
            graph.platforms.push(platform);
        }
        for stage in stages {
            if graph.replaced[stage.index].is_some() {
                continue;
            }
            for (position, instruction) in stage.instructions.iter().enumerate() {
                for Edge {
                    mount,
                    source,
                    kind,
                    span,
                } in instruction_sources(df, stages, contexts, instruction)?
                {
                    graph
                        .sources
                        .entry((stage.index, position))
                        .or_default()
                        .insert(mount, source.clone());
                    graph.deps[stage.index].push(Dependency {
                        source,
                        kind,
                        span,
                        onbuild: false,
                    });
                }
            }
        }
        graph.check_cycles(df, stages)?;
        Ok(graph)
    }

    /// BuildKit's `validateCircularDependency` over `--from` edges.
    fn check_cycles(&self, df: &Dockerfile, stages: &[Stage]) -> Result<(), Error> {
        // 0 = unvisited, 1 = on the current path, 2 = done
        let mut state = vec![0u8; stages.len()];
        for start in 0..stages.len() {
            if state[start] != 0 {
                continue;
            }
            // iterative DFS: (stage, next edge index)
            let mut stack = vec![(start, 0usize)];
            state[start] = 1;
            while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
                let next = self.deps[node]
                    .get(*edge)
                    .map(|d| (d.source.clone(), d.span));
                *edge += 1;
                match next {
                    Some((Source::Stage { index }, span)) => match state[index] {
                        0 => {
                            state[index] = 1;
                            stack.push((index, 0));
                        }
                        1 => {
                            return Err(df
                                .error(
                                    span,
                                    ErrorKind::CircularDependency {
                                        stage: stage_label(&stages[start]),
                                    },
                                )
                                .expecting(
                                    "--from to name a stage that does not depend on this one",
                                ));
                        }
                        _ => {}
                    },
                    Some(_) => {}
                    None => {
                        state[node] = 2;
                        stack.pop();
                    }
                }
            }
        }
        Ok(())
    }

    /// The stages `target` needs, itself included.
    pub fn needed(&self, target: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(stage) = todo.pop() {
            if !seen.insert(stage) {
                continue;
            }
            if let Some(Base::Stage { index }) = self.bases.get(stage) {
                todo.push(*index);
            }
            for dep in self.deps.get(stage).into_iter().flatten() {
                if let Source::Stage { index } = dep.source {
                    todo.push(index);
                }
            }
        }
        seen
    }

    /// Needed stages in an order where everything comes after what it
    /// needs (all edges point to earlier stages once checked).
    pub fn build_order(&self, target: usize) -> Vec<usize> {
        self.needed(target).into_iter().collect()
    }

    /// Images the needed stages use, in first-use order.
    pub fn external_images(stages: &[super::PlannedStage]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for stage in stages.iter().filter(|s| s.needed) {
            let mut push = |r: &String| {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            };
            if let Base::Image { reference } = &stage.base {
                push(reference);
            }
            for dep in &stage.dependencies {
                if let Source::Image { reference } = &dep.source {
                    push(reference);
                }
            }
        }
        out
    }
}

/// A `--from` edge of one instruction.
pub(crate) struct Edge {
    /// The mount index, or `None` for `COPY --from`.
    pub mount: Option<usize>,
    pub source: Source,
    pub kind: DependencyKind,
    pub span: Span,
}

/// The `--from` edges of one instruction.
pub(crate) fn instruction_sources(
    df: &Dockerfile,
    stages: &[Stage],
    contexts: Contexts<'_>,
    instruction: &Instruction,
) -> Result<Vec<Edge>, Error> {
    let mut out = Vec::new();
    match &instruction.kind {
        InstructionKind::Copy(copy) => {
            if let Some(from) = &copy.from {
                // BuildKit expands the value with no variables at all and
                // refuses it if that changes it (a `$` reference, quotes or
                // escapes): the stage graph cannot depend on a stage's
                // variables.
                let lexer = Lexer::new(df.escape);
                let unchanged = lexer
                    .process_word(&from.value, &NoEnv)
                    .is_ok_and(|e| e.value == from.value);
                if !unchanged {
                    return Err(df.error(from.span, ErrorKind::FromVariable).expecting(
                        "a stage name, stage index or image reference without variables",
                    ));
                }
                if !from.value.is_empty() {
                    let source = resolve_source(df, stages, contexts, &from.value, from.span)?;
                    out.push(Edge {
                        mount: None,
                        source,
                        kind: DependencyKind::CopyFrom,
                        span: from.span,
                    });
                }
            }
        }
        InstructionKind::Run(run) => {
            for (i, mount) in run.mounts.iter().enumerate() {
                if let Some(from) = &mount.from {
                    let source = resolve_source(df, stages, contexts, from, mount.raw.span)?;
                    out.push(Edge {
                        mount: Some(i),
                        source,
                        kind: DependencyKind::MountFrom,
                        span: mount.raw.span,
                    });
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// The stage `--target` names, or the last one.
pub(crate) fn find_target(
    df: &Dockerfile,
    stages: &[Stage],
    target: Option<&str>,
) -> Result<usize, Error> {
    let Some(name) = target else {
        return Ok(stages.len().saturating_sub(1));
    };
    let lower = name.to_lowercase();
    if let Some(stage) = stages.iter().find(|s| s.name() == Some(lower.as_str())) {
        return Ok(stage.index);
    }
    let names: Vec<&str> = stages.iter().filter_map(Stage::name).collect();
    let span = stages.first().map_or(Span::point(1, 1), |s| s.from.span);
    // Stage names are matched ignoring case, so the suggestion is too.
    let suggestion = crate::suggest::nearest_ignoring_case(
        name,
        names.iter().copied(),
        crate::suggest::Order::Listed,
    );
    Err(df
        .error(
            span,
            ErrorKind::TargetNotFound {
                name: name.to_owned(),
                suggestion,
            },
        )
        .expecting(if names.is_empty() {
            "no --target: this Dockerfile has no named stages".to_owned()
        } else {
            format!("--target to be one of: {}", names.join(", "))
        }))
}
