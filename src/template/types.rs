//! Go types for JSON documents, so that a template prints a value as
//! Docker prints the typed Go value it decoded (`{[CMD true] 30s 3s 0s 0}`
//! for a `*container.HealthConfig`, `map[80/tcp:{}]` for a `nat.PortSet`),
//! not as the generic `map[string]interface {}` the JSON would make.

/// The Go type of a JSON value. `Any` is `interface {}`: the value prints
/// after its own JSON shape.
#[derive(Debug, PartialEq, Eq)]
pub enum GoType {
    /// `interface {}`.
    Any,
    /// `string`.
    String,
    /// `bool`.
    Bool,
    /// Any integer type (`int`, `int64`).
    Int,
    /// `time.Duration`: integer nanoseconds, printed by its `String` method.
    Duration,
    /// `struct {}`, the element of Docker's sets (`{"80/tcp": {}}`).
    EmptyStruct,
    /// A slice, with its Go type name.
    Slice(&'static str, &'static GoType),
    /// A map with string keys: its Go type name, the name of a named key
    /// type (`nat.Port`: indexing it with a plain string fails in Go) and
    /// its element type.
    Map(&'static str, Option<&'static str>, &'static GoType),
    /// A struct: its Go type name and fields in declaration order.
    Struct(&'static str, &'static [Field]),
    /// A pointer (JSON null is the nil pointer).
    Pointer(&'static GoType),
}

/// A struct field: its Go name, its JSON key and its type.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    /// The name templates use (`.ID`).
    pub name: &'static str,
    /// The key in the JSON document (`Id`).
    pub key: &'static str,
    /// The field's type.
    pub ty: &'static GoType,
}

impl GoType {
    /// Go's name of the type, as `%T` prints it.
    pub fn name(&self) -> String {
        match self {
            GoType::Any => "interface {}".to_owned(),
            GoType::String => "string".to_owned(),
            GoType::Bool => "bool".to_owned(),
            GoType::Int => "int64".to_owned(),
            GoType::Duration => "time.Duration".to_owned(),
            GoType::EmptyStruct => "struct {}".to_owned(),
            GoType::Slice(name, _) | GoType::Map(name, ..) | GoType::Struct(name, _) => {
                (*name).to_owned()
            }
            GoType::Pointer(inner) => format!("*{}", inner.name()),
        }
    }

    /// The struct field called `name`, if this is a struct with one.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        match self {
            GoType::Struct(_, fields) => fields.iter().find(|f| f.name == name),
            _ => None,
        }
    }
}

/// `interface {}`: values the template computed, and untyped documents.
pub static ANY: GoType = GoType::Any;

const fn field(name: &'static str, ty: &'static GoType) -> Field {
    Field {
        name,
        key: name,
        ty,
    }
}

static STRING: GoType = GoType::String;
static BOOL: GoType = GoType::Bool;
static INT: GoType = GoType::Int;
static DURATION: GoType = GoType::Duration;
static EMPTY: GoType = GoType::EmptyStruct;
static STRINGS: GoType = GoType::Slice("[]string", &STRING);
static STR_SLICE: GoType = GoType::Slice("strslice.StrSlice", &STRING);
static LABELS: GoType = GoType::Map("map[string]string", None, &STRING);
static PORT_SET: GoType = GoType::Map("nat.PortSet", Some("nat.Port"), &EMPTY);
static VOLUMES: GoType = GoType::Map("map[string]struct {}", None, &EMPTY);

static HEALTH_CONFIG: GoType = GoType::Struct(
    "container.HealthConfig",
    &[
        field("Test", &STRINGS),
        field("Interval", &DURATION),
        field("Timeout", &DURATION),
        field("StartPeriod", &DURATION),
        field("Retries", &INT),
    ],
);
static HEALTH_CONFIG_POINTER: GoType = GoType::Pointer(&HEALTH_CONFIG);
static INT_POINTER: GoType = GoType::Pointer(&INT);

/// Docker 20.10's `container.Config`, fields in its order.
static CONTAINER_CONFIG: GoType = GoType::Struct(
    "container.Config",
    &[
        field("Hostname", &STRING),
        field("Domainname", &STRING),
        field("User", &STRING),
        field("AttachStdin", &BOOL),
        field("AttachStdout", &BOOL),
        field("AttachStderr", &BOOL),
        field("ExposedPorts", &PORT_SET),
        field("Tty", &BOOL),
        field("OpenStdin", &BOOL),
        field("StdinOnce", &BOOL),
        field("Env", &STRINGS),
        field("Cmd", &STR_SLICE),
        field("Healthcheck", &HEALTH_CONFIG_POINTER),
        field("ArgsEscaped", &BOOL),
        field("Image", &STRING),
        field("Volumes", &VOLUMES),
        field("WorkingDir", &STRING),
        field("Entrypoint", &STR_SLICE),
        field("NetworkDisabled", &BOOL),
        field("MacAddress", &STRING),
        field("OnBuild", &STRINGS),
        field("Labels", &LABELS),
        field("StopSignal", &STRING),
        field("StopTimeout", &INT_POINTER),
        field("Shell", &STR_SLICE),
    ],
);
static CONTAINER_CONFIG_POINTER: GoType = GoType::Pointer(&CONTAINER_CONFIG);

static ROOT_FS: GoType = GoType::Struct(
    "types.RootFS",
    &[
        field("Type", &STRING),
        field("Layers", &STRINGS),
        field("BaseLayer", &STRING),
    ],
);

static PORT_BINDING: GoType = GoType::Struct(
    "nat.PortBinding",
    &[
        Field {
            name: "HostIP",
            key: "HostIp",
            ty: &STRING,
        },
        field("HostPort", &STRING),
    ],
);
static PORT_BINDINGS: GoType = GoType::Slice("[]nat.PortBinding", &PORT_BINDING);
static PORT_MAP: GoType = GoType::Map("nat.PortMap", Some("nat.Port"), &PORT_BINDINGS);

static HOST_CONFIG: GoType = GoType::Struct(
    "container.HostConfig",
    &[
        field("PortBindings", &PORT_MAP),
        field("PublishAllPorts", &BOOL),
    ],
);
static HOST_CONFIG_POINTER: GoType = GoType::Pointer(&HOST_CONFIG);

static NETWORK_SETTINGS: GoType =
    GoType::Struct("types.NetworkSettings", &[field("Ports", &PORT_MAP)]);
static NETWORK_SETTINGS_POINTER: GoType = GoType::Pointer(&NETWORK_SETTINGS);

/// `docker container inspect`'s document (`types.ContainerJSON`), limited
/// to the fields whose Go types print differently from their JSON (port
/// maps: `map[80/tcp:[{0.0.0.0 18080}]]`); a template using any other
/// field runs over the plain JSON (see [`IMAGE_INSPECT`]).
pub static CONTAINER_INSPECT: GoType = GoType::Struct(
    "types.ContainerJSON",
    &[
        field("HostConfig", &HOST_CONFIG_POINTER),
        field("Config", &CONTAINER_CONFIG_POINTER),
        field("NetworkSettings", &NETWORK_SETTINGS_POINTER),
    ],
);

/// `docker image inspect`'s document (Docker 20.10's `types.ImageInspect`),
/// limited to the fields kiln's document has: a field Docker has and kiln
/// does not (`GraphDriver`) fails in the typed pass, and the template then
/// runs over the plain JSON, as Docker's own fallback does. `Descriptor`
/// (Docker 25) is left to that fallback too.
pub static IMAGE_INSPECT: GoType = GoType::Struct(
    "types.ImageInspect",
    &[
        Field {
            name: "ID",
            key: "Id",
            ty: &STRING,
        },
        field("RepoTags", &STRINGS),
        field("RepoDigests", &STRINGS),
        field("Parent", &STRING),
        field("Comment", &STRING),
        field("Created", &STRING),
        field("DockerVersion", &STRING),
        field("Author", &STRING),
        field("Config", &CONTAINER_CONFIG_POINTER),
        field("Architecture", &STRING),
        field("Variant", &STRING),
        field("Os", &STRING),
        field("Size", &INT),
        field("RootFS", &ROOT_FS),
    ],
);

/// Go's `time.Duration.String`: `1h2m3.5s`, `1.5s`, `500ms`, `1µs`, `0s`.
pub fn duration_string(nanos: i128) -> String {
    let negative = nanos < 0;
    let mut u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".to_owned();
    }
    let mut text = if u < 1_000_000_000 {
        let (unit, precision) = if u < 1_000 {
            ("ns", 0)
        } else if u < 1_000_000 {
            ("µs", 3)
        } else {
            ("ms", 6)
        };
        let fraction = fraction(u, precision);
        u /= 10u128.pow(precision);
        format!("{u}{fraction}{unit}")
    } else {
        let fraction = fraction(u, 9);
        let seconds = u / 1_000_000_000;
        let mut text = format!("{}{fraction}s", seconds % 60);
        let minutes = seconds / 60;
        if minutes > 0 {
            text = format!("{}m{text}", minutes % 60);
            let hours = minutes / 60;
            if hours > 0 {
                text = format!("{hours}h{text}");
            }
        }
        text
    };
    if negative {
        text.insert(0, '-');
    }
    text
}

/// The fraction of `value / 10^precision` as `.123` without trailing zeros
/// (nothing when it is zero), as Go's `fmtFrac`.
fn fraction(value: u128, precision: u32) -> String {
    let digits = value % 10u128.pow(precision);
    if digits == 0 {
        return String::new();
    }
    let text = format!("{digits:0width$}", width = precision as usize);
    format!(".{}", text.trim_end_matches('0'))
}
