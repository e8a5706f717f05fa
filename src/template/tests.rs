//! Template tests: Docker's documented examples, Go's formatting and
//! every error message, plus a garbage-input run that must never panic.

use serde_json::{Value, json};

use super::{Template, TemplateError};

fn sample() -> Value {
    json!({
        "Id": "sha256:abc",
        "RepoTags": ["alpine:latest", "alpine:3"],
        "Size": 4_260_000,
        "Ratio": 1.5,
        "Big": 1e21,
        "Empty": "",
        "Zero": 0,
        "False": false,
        "Nil": null,
        "EmptyArr": [],
        "EmptyObj": {},
        "Html": "<a&b>",
        "Config": {
            "Env": ["PATH=/usr/bin", "A=1"],
            "Cmd": ["/bin/sh", "-c", "echo hi"],
            "Labels": {"b": "2", "a": "1"},
            "NoLabels": null,
            "User": "",
            "ExposedPorts": {"80/tcp": {}, "443/tcp": {}}
        },
        "RootFS": {"Type": "layers", "Layers": ["sha256:l1", "sha256:l2"]},
        "Nested": [["a", "b"], "c"],
        "Objs": [{"Name": "first"}, {"Name": "second"}],
        "Mixed": [1, "x", null, true, 2.5]
    })
}

/// Runs a template over the sample data; panics with the error otherwise.
fn run(template: &str) -> String {
    let parsed = Template::parse(template).unwrap_or_else(|e| panic!("parse {template:?}: {e}"));
    parsed
        .execute(&sample())
        .unwrap_or_else(|e| panic!("execute {template:?}: {e}"))
}

/// The error of parsing or executing a template over the sample data.
fn error(template: &str) -> String {
    match Template::parse(template) {
        Err(e) => e.to_string(),
        Ok(parsed) => match parsed.execute(&sample()) {
            Err(e) => e.to_string(),
            Ok(out) => panic!("{template:?} succeeded with {out:?}"),
        },
    }
}

fn check(cases: &[(&str, &str)]) {
    for &(template, want) in cases {
        assert_eq!(run(template), want, "template {template:?}");
    }
}

fn check_errors(cases: &[(&str, &str)]) {
    for &(template, want) in cases {
        assert_eq!(error(template), want, "template {template:?}");
    }
}

#[test]
fn docker_examples() {
    check(&[
        ("{{.Config.Env}}", "[PATH=/usr/bin A=1]"),
        (
            "{{json .Config}}",
            r#"{"Env":["PATH=/usr/bin","A=1"],"Cmd":["/bin/sh","-c","echo hi"],"Labels":{"b":"2","a":"1"},"NoLabels":null,"User":"","ExposedPorts":{"80/tcp":{},"443/tcp":{}}}"#,
        ),
        ("{{index .Config.Labels \"a\"}}", "1"),
        ("{{index .Config.Labels \"nope\"}}", ""),
        (
            "{{range .RootFS.Layers}}{{println .}}{{end}}",
            "sha256:l1\nsha256:l2\n",
        ),
        ("{{join .Config.Cmd \" \"}}", "/bin/sh -c echo hi"),
        ("{{if .Id}}y{{else}}n{{end}}", "y"),
        ("{{if .Empty}}y{{else}}n{{end}}", "n"),
        ("{{upper .RootFS.Type}}", "LAYERS"),
        ("{{len .RootFS.Layers}}", "2"),
        ("{{.Config.Labels}}", "map[a:1 b:2]"),
        (
            "{{.RepoTags}} {{.Size}}",
            "[alpine:latest alpine:3] 4260000",
        ),
        (
            "{{range $p, $conf := .Config.ExposedPorts}}{{$p}} {{end}}",
            "443/tcp 80/tcp ",
        ),
        ("{{.RootFS.Type}}:{{len .RootFS.Layers}}", "layers:2"),
        ("{{json .RepoTags}}", r#"["alpine:latest","alpine:3"]"#),
    ]);
}

#[test]
fn values_print_like_go() {
    check(&[
        ("{{.Nested}}", "[[a b] c]"),
        ("{{.Nil}}", "<nil>"),
        ("{{.Config.NoLabels}}", "<nil>"),
        ("{{.Config.NoLabels.x}}", "<no value>"),
        ("{{.Config.NoLabels.x.y}}", "<no value>"),
        ("{{.Size}}", "4260000"),
        ("{{.Ratio}}", "1.5"),
        ("{{.Big}}", "1e+21"),
        ("{{.False}} {{.Zero}}", "false 0"),
        ("{{.EmptyArr}} {{.EmptyObj}}", "[] map[]"),
        (
            "{{.Config.ExposedPorts}}",
            "map[443/tcp:map[] 80/tcp:map[]]",
        ),
        ("{{.Objs}}", "[map[Name:first] map[Name:second]]"),
        ("{{.Mixed}}", "[1 x <nil> true 2.5]"),
        ("{{.}}", &format_sample()),
        ("{{1.0}} {{2.50}} {{1e6}} {{0.00001}}", "1 2.5 1e+06 1e-05"),
        (
            "{{-7}} {{+3}} {{0x1F}} {{0o17}} {{0b101}} {{017}} {{1_000}}",
            "-7 3 31 15 5 15 1000",
        ),
        ("{{'a'}} {{'\\n'}} {{'é'}}", "97 10 233"),
        ("{{true}} {{false}}", "true false"),
        (r#"{{"a\tb\u00e9\x41\101\"\\"}}"#, "a\tbéAA\"\\"),
        ("{{`raw\\n\"`}}", "raw\\n\""),
        ("{{`multi\nline`}}", "multi\nline"),
    ]);
}

fn format_sample() -> String {
    let mut out = String::new();
    super::format::value_v(&sample(), &mut out);
    assert!(
        out.starts_with("map[Big:1e+21 Config:map[Cmd:[/bin/sh -c echo hi] Env:"),
        "{out}"
    );
    out
}

#[test]
fn text_trim_markers_and_comments() {
    check(&[
        ("plain text", "plain text"),
        ("", ""),
        ("a  {{- .Id -}}  b", "asha256:abcb"),
        ("a \n\t {{- .Id}} b", "asha256:abc b"),
        ("a {{.Id -}} \n b", "a sha256:abcb"),
        ("x \n{{- /* comment */ -}}\n y", "xy"),
        ("a{{/* hi */}}b", "ab"),
        ("a{{/* multi\nline */}}b", "ab"),
        ("{{-3}}", "-3"),
        ("{{- 3}}", "3"),
        ("{{3 -}}", "3"),
        ("{{ .Id }}", "sha256:abc"),
        ("{{\n.Id\n}}", "sha256:abc"),
        ("{{.Id}}}", "sha256:abc}"),
        ("{ {.Id} }", "{ {.Id} }"),
        (
            "{{range .RootFS.Layers -}}\n  {{.}}\n{{- end}}",
            "sha256:l1sha256:l2",
        ),
    ]);
}

#[test]
fn variables() {
    check(&[
        ("{{$x := .Id}}{{$x}}", "sha256:abc"),
        ("{{$x := .Config}}{{$x.Labels.a}}", "1"),
        ("{{$}}", &run("{{.}}")),
        ("{{$.Id}}", "sha256:abc"),
        (
            "{{range .RootFS.Layers}}{{$.RootFS.Type}}{{end}}",
            "layerslayers",
        ),
        (
            "{{range $i, $v := .RootFS.Layers}}{{$i}}={{$v}};{{end}}",
            "0=sha256:l1;1=sha256:l2;",
        ),
        (
            "{{range $v := .RootFS.Layers}}{{$v}};{{end}}",
            "sha256:l1;sha256:l2;",
        ),
        (
            "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}",
            "a=1,b=2,",
        ),
        ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
        ("{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}", "21"),
        (
            "{{$n := 0}}{{range .RootFS.Layers}}{{$n = .}}{{end}}{{$n}}",
            "sha256:l2",
        ),
        (
            "{{$i := 9}}{{$v := 9}}{{range $i, $v = .RootFS.Layers}}{{end}}{{$i}} {{$v}}",
            "1 sha256:l2",
        ),
        ("{{$x := \"a\"}}{{$x | printf \"%s!\"}}", "a!"),
        ("{{with $x := .Config}}{{$x.User}}-{{end}}", "-"),
        ("{{($x := 5)}}{{$x}}", "55"),
    ]);
}

#[test]
fn control_structures() {
    check(&[
        (
            "{{if .Empty}}a{{else if .Zero}}b{{else if .Id}}c{{else}}d{{end}}",
            "c",
        ),
        ("{{if .Empty}}a{{else if .Zero}}b{{end}}", ""),
        ("{{if and .Id .Size}}both{{end}}", "both"),
        ("{{if .Config.NoLabels.x}}y{{else}}n{{end}}", "n"),
        (
            "{{if .EmptyArr}}y{{else}}n{{end}}{{if .EmptyObj}}y{{else}}n{{end}}",
            "nn",
        ),
        (
            "{{if .Mixed}}y{{end}}{{if .Ratio}}y{{end}}{{if .Nil}}y{{end}}",
            "yy",
        ),
        ("{{with .Config}}{{.User}}|{{end}}", "|"),
        ("{{with .Empty}}x{{else}}e{{end}}", "e"),
        (
            "{{with .Empty}}x{{else with .Id}}{{.}}{{end}}",
            "sha256:abc",
        ),
        ("{{with .RootFS}}{{.Type}}{{end}}", "layers"),
        ("{{range .EmptyArr}}x{{else}}none{{end}}", "none"),
        ("{{range .Nil}}x{{else}}none{{end}}", "none"),
        ("{{range .Config.NoLabels.x}}x{{else}}none{{end}}", "none"),
        ("{{range .EmptyObj}}x{{end}}", ""),
        ("{{range 3}}{{.}}{{end}}", "012"),
        ("{{range $i := 2}}{{$i}}{{end}}", "01"),
        ("{{range .Config.Labels}}{{.}}{{end}}", "12"),
        ("{{range .Objs}}{{.Name}} {{end}}", "first second "),
        (
            "{{range .Config.Cmd}}{{if eq . \"-c\"}}{{break}}{{end}}{{.}}{{end}}",
            "/bin/sh",
        ),
        (
            "{{range .Config.Cmd}}{{if eq . \"-c\"}}{{continue}}{{end}}{{.}}{{end}}",
            "/bin/shecho hi",
        ),
        ("{{range .Nested}}{{len .}};{{end}}", "2;1;"),
        (
            "{{range .Objs}}{{range .}}{{.}}{{end}};{{end}}",
            "first;second;",
        ),
        ("{{range .Nested}}{{with .}}{{break}}{{end}}x{{end}}y", "y"),
    ]);
}

#[test]
fn functions() {
    check(&[
        ("{{eq .RootFS.Type \"layers\"}}", "true"),
        ("{{eq 1 2 1}} {{eq 1 2 3}}", "true false"),
        ("{{ne 1 2}} {{ne \"a\" \"a\"}}", "true false"),
        (
            "{{lt 1 2}} {{le 2 2}} {{gt \"b\" \"a\"}} {{ge 1.5 1.5}} {{gt 1 2}}",
            "true true true true false",
        ),
        (
            "{{eq .Nil nil}} {{eq .Nil \"x\"}} {{eq .Config.NoLabels.x .Nil}}",
            "true false true",
        ),
        ("{{eq .Size 4260000}} {{lt .Ratio 2.0}}", "true true"),
        (
            "{{and 1 0 2}} {{and 1 2}} {{or 0 \"\" \"x\"}} {{or 0 \"\"}}|",
            "0 2 x |",
        ),
        ("{{not .Empty}} {{not .Id}} {{not .Nil}}", "true false true"),
        ("{{and .Id .Size}}", "4260000"),
        ("{{or .Id (index .RootFS.Layers 99)}}", "sha256:abc"),
        ("{{and .Empty (index .RootFS.Layers 99)}}|", "|"),
        ("{{.Id | or .Empty}}", "sha256:abc"),
        ("{{index .RootFS.Layers 1}}", "sha256:l2"),
        ("{{index .Nested 0 1}}", "b"),
        ("{{index .Objs 1 \"Name\"}}", "second"),
        ("{{index \"abc\" 1}}", "98"),
        (
            "{{index .Config}}",
            "map[Cmd:[/bin/sh -c echo hi] Env:[PATH=/usr/bin A=1] ExposedPorts:map[443/tcp:map[] 80/tcp:map[]] Labels:map[a:1 b:2] NoLabels:<nil> User:]",
        ),
        ("{{slice .RootFS.Layers 1}}", "[sha256:l2]"),
        ("{{slice .RootFS.Layers 0 1}}", "[sha256:l1]"),
        (
            "{{slice .RootFS.Layers}} {{slice .RootFS.Layers 2}}",
            "[sha256:l1 sha256:l2] []",
        ),
        ("{{slice .Id 0 6}} {{slice .Id 7}}", "sha256 abc"),
        ("{{len .Id}} {{len .Config.Labels}} {{len \"é\"}}", "10 2 2"),
        ("{{print 1 2 \"a\" 3 \"b\" \"c\"}}", "1 2a3bc"),
        ("{{print .Nil .Config.NoLabels.x}}", "<nil> <nil>"),
        ("{{print}}|{{println}}|", "|\n|"),
        ("{{println \"a\" 1 .Config.Labels}}", "a 1 map[a:1 b:2]\n"),
        ("{{json .Html}}", "\"<a&b>\""),
        ("{{json .Config.Labels}}", r#"{"b":"2","a":"1"}"#),
        (
            "{{json .Nil}} {{json .Config.NoLabels.x}} {{json 1.5}} {{json .Big}} {{json 1}}",
            "null null 1.5 1e+21 1",
        ),
        (
            "{{json \"a\\\"b\\n\\u2028\\u0001\"}}",
            r#""a\"b\n\u2028\u0001""#,
        ),
        ("{{split \"a,b,c\" \",\"}}", "[a b c]"),
        ("{{index (split .Id \":\") 1}}", "abc"),
        ("{{len (split \"aé\" \"\")}} {{split \"\" \",\"}}", "2 []"),
        ("{{join (split \"a b\" \" \") \",\"}}", "a,b"),
        ("{{join .EmptyArr \",\"}}|{{join .Nil \",\"}}|", "||"),
        ("{{title \"hello wORLD-foo_bar\"}}", "Hello WORLD-Foo_bar"),
        ("{{lower \"ABC\"}} {{upper \"straße\"}}", "abc STRAßE"),
        ("{{pad \"x\" 2 3}}|{{pad \"\" 2 3}}|", "  x   ||"),
        (
            "{{truncate \"abcdef\" 3.0}} {{truncate \"ab\" 3}} {{truncate \"abc\" 3}} {{truncate \"abc\" 0}}|",
            "abc ab abc |",
        ),
        ("{{truncate \"éé\" 3}}", "é"),
        ("{{.Id | printf \"%s!\"}}", "sha256:abc!"),
        ("{{.RootFS.Layers | len}}", "2"),
        ("{{\"x\" | printf \"%s-%s\" \"y\"}}", "y-x"),
        ("{{.Id | upper | lower}}", "sha256:abc"),
        ("{{.Id | printf}}", "sha256:abc"),
        ("{{len (index .Nested 0)}}", "2"),
        ("{{(index .Objs 0).Name}}", "first"),
        ("{{(.Config).Labels.b}}", "2"),
        ("{{with $x := .Objs}}{{(index $x 1).Name}}{{end}}", "second"),
        ("{{(print \"a\" (print \"b\" (print \"c\")))}}", "abc"),
        (
            "{{html \"<a href='x'>&\\\"\"}}",
            "&lt;a href=&#39;x&#39;&gt;&amp;&#34;",
        ),
        (
            "{{js \"a'b\\\"c\\\\<>&=\\n\"}}",
            "a\\'b\\\"c\\\\\\u003C\\u003E\\u0026\\u003D\\u000A",
        ),
        ("{{urlquery \"a b&c=d/é\"}}", "a+b%26c%3Dd%2F%C3%A9"),
        ("{{html 1 2}} {{.Id | urlquery}}", "1 2 sha256%3Aabc"),
        ("{{json \"\\b\\f\"}}", r#""\b\f""#),
    ]);
}

#[test]
fn null_reads_like_dockers_nil_maps_and_slices() {
    check(&[
        ("{{index .Config.NoLabels \"x\"}}|", "|"),
        ("{{len .Config.NoLabels}}", "0"),
        ("{{range .Config.NoLabels}}x{{else}}empty{{end}}", "empty"),
        ("{{join .Config.NoLabels \",\"}}|", "|"),
        ("{{json .Config.NoLabels}}", "null"),
        ("{{if .Config.NoLabels}}y{{else}}n{{end}}", "n"),
        ("{{.Config.NoLabels.x}}", "<no value>"),
        ("{{with .Config.NoLabels.x}}y{{else}}n{{end}}", "n"),
        (
            "{{$x := .Config.NoLabels.x}}{{$x}} {{print $x}}",
            "<no value> <nil>",
        ),
    ]);
    check_errors(&[
        (
            "{{index .Config.NoLabels 0}}",
            r#"template: :1:2: executing "" at <index .Config.NoLabels 0>: error calling index: index out of range: 0"#,
        ),
        (
            "{{len .Config.NoLabels.x}}",
            r#"template: :1:2: executing "" at <len .Config.NoLabels.x>: error calling len: len of nil pointer"#,
        ),
    ]);
}

#[test]
fn printf_verbs() {
    check(&[
        (
            "{{printf \"%s has %d layers\" .Id (len .RootFS.Layers)}}",
            "sha256:abc has 2 layers",
        ),
        ("{{printf \"%q\" .Id}}", "\"sha256:abc\""),
        (
            "{{printf \"%q\" \"a\\\"b\\n\\t\\x01é\"}}",
            r#""a\"b\n\t\x01é""#,
        ),
        (
            "{{printf \"%.2f\" .Ratio}} {{printf \"%f\" .Ratio}} {{printf \"%.0f\" 2.5}}",
            "1.50 1.500000 2",
        ),
        ("{{printf \"%x %X %x\" 255 255 \"hi\"}}", "ff FF 6869"),
        ("{{printf \"%t %t\" true .False}}", "true false"),
        (
            "{{printf \"%5d|%-5s|%05d|%+d|%5s\" 42 \"ab\" -7 3 \"abcdefg\"}}",
            "   42|ab   |-0007|+3|abcdefg",
        ),
        (
            "{{printf \"%v\" .Config.Labels}} {{printf \"%v\" .Nil}}",
            "map[a:1 b:2] <nil>",
        ),
        (
            "{{printf \"%v %v %v\" 1.0 2.5 .Mixed}}",
            "1 2.5 [1 x <nil> true 2.5]",
        ),
        ("{{printf \"%d\" \"x\"}}", "%!d(string=x)"),
        ("{{printf \"%d\"}}", "%!d(MISSING)"),
        ("{{printf \"%d\" 1 2 \"x\"}}", "1%!(EXTRA int=2, string=x)"),
        ("{{printf \"100%%\"}}", "100%"),
        ("{{printf \"%s\" .Nil}}", "%!s(<nil>)"),
        (
            "{{printf \"%f\" 5}} {{printf \"%d\" 1.5}} {{printf \"%s\" 1}}",
            "%!f(int=5) %!d(float64=1.5) %!s(int=1)",
        ),
        ("{{printf \"%s\" .Config.Env}}", "[PATH=/usr/bin A=1]"),
        (
            "{{printf \"%q\" .Config.Cmd}}",
            r#"["/bin/sh" "-c" "echo hi"]"#,
        ),
        (
            "{{printf \"%d\" .Mixed}}",
            "[1 %!d(string=x) %!d(<nil>) %!d(bool=true) %!d(float64=2.5)]",
        ),
        (
            "{{printf \"%6.2f|%-8.3f|\" 3.14159 2.0}}",
            "  3.14|2.000   |",
        ),
        (
            "{{printf \"%e %g %g %g\" 1234.5 0.00001 100000.0 1e6}}",
            "1.234500e+03 1e-05 100000 1e+06",
        ),
        ("{{printf \"%c%c\" 72 105}}", "Hi"),
        ("{{printf \"%.3s|%.1q\" \"abcdef\" \"xyz\"}}", "abc|\"x\""),
        ("{{printf \"%*d|%-*d|\" 4 7 3 1}}", "   7|1  |"),
        ("{{printf \"%\"}}", "%!(NOVERB)"),
        ("{{printf \"%o %b %#x\" 8 5 255}}", "10 101 0xff"),
        ("{{printf \"%z\" 1}}", "%!z(int=1)"),
        ("{{printf \"%.3d\" 7}}", "007"),
        (
            "{{printf \"%T %T %T %T %T %T\" 1 1.5 \"s\" true .Nil .RepoTags}}",
            "int float64 string bool <nil> []interface {}",
        ),
    ]);
}

#[test]
fn parse_errors() {
    check_errors(&[
        ("{{foo}}", r#"template: :1: function "foo" not defined"#),
        (
            "{{.Id | call}}",
            r#"template: :1: function "call" not defined"#,
        ),
        ("{{.Foo", "template: :1: unclosed action"),
        ("{{", "template: :1: unclosed action"),
        ("{{.Id\n", "template: :2: unclosed action started at :1"),
        ("{{if .Id}}", "template: :1: unexpected EOF"),
        ("{{range .X}}", "template: :1: unexpected EOF"),
        ("{{end}}", "template: :1: unexpected {{end}}"),
        ("{{else}}", "template: :1: unexpected {{else}}"),
        ("{{}}", "template: :1: missing value for command"),
        ("{{ }}", "template: :1: missing value for command"),
        ("{{if}}{{end}}", "template: :1: missing value for if"),
        ("{{with}}{{end}}", "template: :1: missing value for with"),
        ("{{range}}{{end}}", "template: :1: missing value for range"),
        (
            "{{()}}",
            "template: :1: missing value for parenthesized pipeline",
        ),
        (
            "{{range .X}}{{else}}{{else}}{{end}}",
            "template: :1: expected end; found {{else}}",
        ),
        ("{{/* x }}", "template: :1: unclosed comment"),
        (
            "{{/* x */ }}",
            "template: :1: comment ends before closing delimiter",
        ),
        ("{{\"abc}}", "template: :1: unterminated quoted string"),
        ("{{`abc}}", "template: :1: unterminated raw quoted string"),
        ("{{'a}}", "template: :1: unterminated character constant"),
        ("{{'ab'}}", "template: :1: invalid syntax"),
        ("{{\"\\q\"}}", "template: :1: invalid syntax"),
        ("{{(.Id}}", "template: :1: unclosed left paren"),
        ("{{.Id)}}", "template: :1: unexpected \")\" in command"),
        (
            "{{.Id | 1}}",
            "template: :1: non executable command in pipeline stage 2",
        ),
        ("{{$x}}", r#"template: :1: undefined variable "$x""#),
        (
            "{{if true}}{{$y := 1}}{{end}}{{$y}}",
            r#"template: :1: undefined variable "$y""#,
        ),
        ("{{break}}", "template: :1: {{break}} outside {{range}}"),
        (
            "{{continue}}",
            "template: :1: {{continue}} outside {{range}}",
        ),
        (
            "{{range .X}}{{break 1}}{{end}}",
            "template: :1: unexpected \"1\" in {{break}}",
        ),
        ("{{end 1}}", "template: :1: unexpected \"1\" in end"),
        ("{{end .}}", "template: :1: unexpected <.> in end"),
        ("{{.Id ^}}", "template: :1: unexpected \"^\" in operand"),
        (
            "{{ \u{1}}}",
            "template: :1: unrecognized character in action: U+0001",
        ),
        ("{{.Id\u{1}}}", "template: :1: bad character U+0001"),
        ("{{.Id@}}", "template: :1: bad character U+0040 '@'"),
        ("{{.Id}x}}", "template: :1: unexpected \"}\" in operand"),
        ("{{3x}}", "template: :1: bad number syntax: \"3x\""),
        ("{{0x}}", "template: :1: illegal number syntax: \"0x\""),
        ("{{1.2.3}}", "template: :1: unexpected \".3\" in operand"),
        (
            "{{\"a\".B}}",
            "template: :1: unexpected . after term \"\\\"a\\\"\"",
        ),
        (
            "{{range $a, $b, $c := .X}}{{end}}",
            "template: :1: too many declarations in range",
        ),
        (
            "{{$a, $b := .X}}",
            "template: :1: too many declarations in command",
        ),
        (
            "{{range $a, 1}}{{end}}",
            "template: :1: range can only initialize variables",
        ),
        ("{{.Id :}}", "template: :1: expected :="),
        (
            "{{if .A}}{{else if}}{{end}}",
            "template: :1: missing value for if",
        ),
        (
            "{{define \"x\"}}{{end}}",
            "template: :1: {{define}} is not supported in format templates",
        ),
        ("line1\nline2 {{end}}", "template: :2: unexpected {{end}}"),
        ("{{.A else}}", "template: :1: unexpected <else> in operand"),
        (
            "{{\"a very long string\" x}}",
            "template: :1: function \"x\" not defined",
        ),
        (
            "{{index 1 \"0123456789abc\" (}}",
            "template: :1: unclosed left paren",
        ),
        (
            "{{1 \"0123456789abc\" ]}}",
            "template: :1: unexpected \"]\" in operand",
        ),
        ("{{| .A}}", "template: :1: unexpected \"|\" in command"),
        (
            "{{if 1}}{{else}}{{ \"0123456789abcdef\" | x}}{{end}}",
            "template: :1: function \"x\" not defined",
        ),
    ]);
}

#[test]
fn exec_errors() {
    check_errors(&[
        (
            "{{.Foo}}",
            r#"template: :1:2: executing "" at <.Foo>: map has no entry for key "Foo""#,
        ),
        (
            "{{.Config.Foo}}",
            r#"template: :1:9: executing "" at <.Config.Foo>: map has no entry for key "Foo""#,
        ),
        (
            "x\n  {{.Foo}}",
            r#"template: :2:4: executing "" at <.Foo>: map has no entry for key "Foo""#,
        ),
        (
            "{{range .Objs}}{{.Nope}}{{end}}",
            r#"template: :1:17: executing "" at <.Nope>: map has no entry for key "Nope""#,
        ),
        (
            "{{.Id.Foo}}",
            r#"template: :1:5: executing "" at <.Id.Foo>: can't evaluate field Foo in type string"#,
        ),
        (
            "{{.RootFS.Layers.X}}",
            r#"template: :1:9: executing "" at <.RootFS.Layers.X>: can't evaluate field X in type []interface {}"#,
        ),
        (
            "{{$.Foo}}",
            r#"template: :1:3: executing "" at <$.Foo>: map has no entry for key "Foo""#,
        ),
        (
            "{{(index .Objs 0).Nope}}",
            r#"template: :1:17: executing "" at <(index .Objs 0).Nope>: map has no entry for key "Nope""#,
        ),
        (
            "{{len .Size}}",
            r#"template: :1:2: executing "" at <len .Size>: error calling len: len of type int"#,
        ),
        (
            "{{upper .Size}}",
            r#"template: :1:8: executing "" at <.Size>: wrong type for value; expected string; got int"#,
        ),
        (
            "{{upper .Nil}}",
            r#"template: :1:8: executing "" at <.Nil>: invalid value; expected string"#,
        ),
        (
            "{{upper 5}}",
            r#"template: :1:8: executing "" at <5>: expected string; found 5"#,
        ),
        (
            "{{upper nil}}",
            r#"template: :1:8: executing "" at <nil>: cannot assign nil to string"#,
        ),
        (
            "{{truncate .Id \"x\"}}",
            r#"template: :1:15: executing "" at <"x">: expected integer; found "x""#,
        ),
        (
            "{{truncate .Id 1.5}}",
            r#"template: :1:15: executing "" at <1.5>: expected integer; found 1.5"#,
        ),
        (
            "{{truncate .Id .Ratio}}",
            r#"template: :1:15: executing "" at <.Ratio>: wrong type for value; expected int; got float64"#,
        ),
        (
            "{{join .Mixed \",\"}}",
            r#"template: :1:7: executing "" at <.Mixed>: wrong type for value; expected []string; got []interface {}"#,
        ),
        (
            "{{join \"a\" \",\"}}",
            r#"template: :1:7: executing "" at <"a">: can't handle "a" for arg of type []string"#,
        ),
        (
            "{{.Config.Cmd | join \" \"}}",
            r#"template: :1:21: executing "" at <" ">: can't handle " " for arg of type []string"#,
        ),
        (
            "{{.Size | upper}}",
            r#"template: :1:10: executing "" at <upper>: wrong type for value; expected string; got int"#,
        ),
        (
            "{{upper \"a\" \"b\"}}",
            r#"template: :1:2: executing "" at <upper>: wrong number of args for upper: want 1 got 2"#,
        ),
        (
            "{{.Id | upper \"b\"}}",
            r#"template: :1:8: executing "" at <upper>: wrong number of args for upper: want 1 got 2"#,
        ),
        (
            "{{index}}",
            r#"template: :1:2: executing "" at <index>: wrong number of args for index: want at least 1 got 0"#,
        ),
        (
            "{{eq 1}}",
            r#"template: :1:2: executing "" at <eq 1>: error calling eq: missing argument for comparison"#,
        ),
        (
            "{{eq 1 1.5}}",
            r#"template: :1:2: executing "" at <eq 1 1.5>: error calling eq: incompatible types for comparison: int and float64"#,
        ),
        (
            "{{eq .Config .Config}}",
            r#"template: :1:2: executing "" at <eq .Config .Config>: error calling eq: non-comparable type map[Cmd:[/bin/sh -c echo hi] Env:[PATH=/usr/bin A=1] ExposedPorts:map[443/tcp:map[] 80/tcp:map[]] Labels:map[a:1 b:2] NoLabels:<nil> User:]: map[string]interface {}"#,
        ),
        (
            "{{lt .Config .Config}}",
            r#"template: :1:2: executing "" at <lt .Config .Config>: error calling lt: invalid type for comparison"#,
        ),
        (
            "{{eq .EmptyArr .EmptyObj}}",
            r#"template: :1:2: executing "" at <eq .EmptyArr .EmptyObj>: error calling eq: non-comparable types []: []interface {}, map[string]interface {}: map[]"#,
        ),
        (
            "{{eq .EmptyArr \"x\"}}",
            r#"template: :1:2: executing "" at <eq .EmptyArr "x">: error calling eq: incompatible types for comparison: []interface {} and string"#,
        ),
        (
            "{{lt true 1}}",
            r#"template: :1:2: executing "" at <lt true 1>: error calling lt: incompatible types for comparison: bool and int"#,
        ),
        (
            "{{lt true false}}",
            r#"template: :1:2: executing "" at <lt true false>: error calling lt: invalid type for comparison"#,
        ),
        (
            "{{gt \"a\" 1}}",
            r#"template: :1:2: executing "" at <gt "a" 1>: error calling gt: incompatible types for comparison: string and int"#,
        ),
        (
            "{{index .RootFS.Layers 5}}",
            r#"template: :1:2: executing "" at <index .RootFS.Layers 5>: error calling index: index out of range: 5"#,
        ),
        (
            "{{printf \"%s\" (index .RootFS.Layers 2)}}",
            r#"template: :1:15: executing "" at <index .RootFS.Layers 2>: error calling index: index out of range: 2"#,
        ),
        (
            "{{index .RootFS.Layers -1}}",
            r#"template: :1:2: executing "" at <index .RootFS.Layers -1>: error calling index: index out of range: -1"#,
        ),
        (
            "{{index .RootFS.Layers \"a\"}}",
            r#"template: :1:2: executing "" at <index .RootFS.Layers "a">: error calling index: cannot index slice/array with type string"#,
        ),
        (
            "{{index .Config.Labels 1}}",
            r#"template: :1:2: executing "" at <index .Config.Labels 1>: error calling index: value has type int; should be string"#,
        ),
        (
            "{{index .Config.NoLabels.x 1}}",
            r#"template: :1:2: executing "" at <index .Config.NoLabels.x 1>: error calling index: index of untyped nil"#,
        ),
        (
            "{{index .Mixed 2 1}}",
            r#"template: :1:2: executing "" at <index .Mixed 2 1>: error calling index: index of nil pointer"#,
        ),
        (
            "{{index .Size 1}}",
            r#"template: :1:2: executing "" at <index .Size 1>: error calling index: can't index item of type int"#,
        ),
        (
            "{{slice .Id 3 1}}",
            r#"template: :1:2: executing "" at <slice .Id 3 1>: error calling slice: invalid slice index: 3 > 1"#,
        ),
        (
            "{{slice .Id 0 99}}",
            r#"template: :1:2: executing "" at <slice .Id 0 99>: error calling slice: index out of range: 99"#,
        ),
        (
            "{{slice .Id 0 1 2}}",
            r#"template: :1:2: executing "" at <slice .Id 0 1 2>: error calling slice: cannot 3-index slice a string"#,
        ),
        (
            "{{slice .Size}}",
            r#"template: :1:2: executing "" at <slice .Size>: error calling slice: can't slice item of type int"#,
        ),
        (
            "{{slice .Nil}}",
            r#"template: :1:2: executing "" at <slice .Nil>: error calling slice: slice of untyped nil"#,
        ),
        (
            "{{.Id 1}}",
            r#"template: :1:2: executing "" at <.Id>: Id is not a method but has arguments"#,
        ),
        (
            "{{1 2}}",
            r#"template: :1:2: executing "" at <1>: can't give argument to non-function 1"#,
        ),
        (
            "{{$x := 1}}{{$x 2}}",
            r#"template: :1:13: executing "" at <$x>: can't give argument to non-function $x"#,
        ),
        (
            "{{nil}}",
            r#"template: :1:2: executing "" at <nil>: nil is not a command"#,
        ),
        (
            "{{truncate \"abc\" -1}}",
            r#"template: :1:2: executing "" at <truncate "abc" -1>: error calling truncate: runtime error: slice bounds out of range [:-1]"#,
        ),
        (
            "{{pad \"a\" -1 0}}",
            r#"template: :1:2: executing "" at <pad "a" -1 0>: error calling pad: strings: negative Repeat count"#,
        ),
        (
            "{{range .Id}}{{end}}",
            r#"template: :1:8: executing "" at <.Id>: range can't iterate over sha256:abc"#,
        ),
        (
            "{{range 1.5}}{{end}}",
            r#"template: :1:8: executing "" at <1.5>: range can't iterate over 1.5"#,
        ),
        (
            "{{99999999999999999999}}",
            r#"template: :1:2: executing "" at <99999999999999999999>: 99999999999999999999 overflows int"#,
        ),
        (
            "{{(nil).A}}",
            r#"template: :1:3: executing "" at <nil>: nil is not a command"#,
        ),
    ]);
}

#[test]
fn errors_are_typed() {
    assert_eq!(
        Template::parse("{{foo}}").unwrap_err(),
        TemplateError::Parse {
            line: 1,
            message: r#"function "foo" not defined"#.to_owned()
        }
    );
    let err = Template::parse("a\n\n {{.X}}")
        .unwrap()
        .execute(&json!({}))
        .unwrap_err();
    assert_eq!(
        err,
        TemplateError::Exec {
            line: 3,
            column: 3,
            context: ".X".to_owned(),
            message: r#"map has no entry for key "X""#.to_owned()
        }
    );
}

#[test]
fn non_object_data() {
    let t = Template::parse("{{.}}|{{len .}}").unwrap();
    assert_eq!(t.execute(&json!("abc")).unwrap(), "abc|3");
    assert_eq!(t.execute(&json!([1, 2])).unwrap(), "[1 2]|2");
    let t = Template::parse("{{.A}}").unwrap();
    assert_eq!(t.execute(&Value::Null).unwrap(), "<no value>");
    assert_eq!(
        t.execute(&json!(5)).unwrap_err().to_string(),
        r#"template: :1:2: executing "" at <.A>: can't evaluate field A in type int"#
    );
    // A parsed template runs against many values, as `docker images --format` does.
    let t = Template::parse("{{.Name}}:{{.Tag}}").unwrap();
    assert_eq!(t.execute(&json!({"Name": "a", "Tag": "1"})).unwrap(), "a:1");
    assert_eq!(t.execute(&json!({"Name": "b", "Tag": "2"})).unwrap(), "b:2");
}

#[test]
fn limits_stop_runaway_templates() {
    let nested = format!("{{{{{}1{}}}}}", "(".repeat(200), ")".repeat(200));
    assert_eq!(
        error(&nested),
        "template: :1: max expression depth exceeded"
    );
    let nested = format!("{}{}", "{{if 1}}".repeat(200), "{{end}}".repeat(200));
    assert_eq!(
        error(&nested),
        "template: :1: max expression depth exceeded"
    );
    let ok = format!("{{{{{}1{}}}}}", "(".repeat(99), ")".repeat(99));
    assert_eq!(run(&ok), "1");
    let ok = format!("{}x{}", "{{with .}}".repeat(99), "{{end}}".repeat(99));
    assert_eq!(run(&ok), "x");

    assert_eq!(
        error("{{range 100000000}}{{end}}"),
        r#"template: :1:8: executing "" at <100000000>: exceeded maximum template steps (10000000)"#
    );
    let big = error("{{range 100}}{{printf \"%1000000d\" 1}}{{end}}");
    assert!(big.ends_with("output exceeds 16777216 bytes"), "{big}");
    let text = "x".repeat(1 << 20);
    let big = error(&format!("{{{{range 100}}}}{text}{{{{end}}}}"));
    assert!(
        big.starts_with("template: :1:13: executing \"\" at <xxx"),
        "{}",
        &big[..60]
    );
    assert!(big.ends_with("output exceeds 16777216 bytes"));
    let doubling = error("{{$x := \"ab\"}}{{range 100}}{{$x = printf \"%s%s\" $x $x}}{{end}}");
    assert!(
        doubling.ends_with("error calling printf: result exceeds 16777216 bytes"),
        "{doubling}"
    );
    assert_eq!(run("{{printf \"%10000000d\" 1}}"), "%!(BADWIDTH)1");
    assert!(
        error("{{pad \"x\" 99999999999 0}}")
            .ends_with("error calling pad: result exceeds 16777216 bytes")
    );
}

/// A xorshift64 generator: the same garbage on every machine.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % u64::try_from(n).unwrap()).unwrap()
    }
}

#[test]
fn garbage_never_panics() {
    const PIECES: &[&str] = &[
        "{{",
        "}}",
        "{{-",
        " -}}",
        "{{- ",
        ".Config",
        ".Labels",
        ".Nested",
        ".Mixed",
        ".Nil",
        ".",
        "$",
        "$x",
        " := ",
        " = ",
        "|",
        "(",
        ")",
        "\"s\"",
        "`r`",
        "'a'",
        "'",
        "\"",
        "`",
        "1",
        "-1",
        "1.5",
        "0x",
        "1e",
        "if ",
        "else ",
        "end",
        "range ",
        "with ",
        "break",
        "continue",
        "printf ",
        "index ",
        "slice ",
        "len ",
        "json ",
        "eq ",
        "lt ",
        "and ",
        "or ",
        "not ",
        "print ",
        "split ",
        "join ",
        "pad ",
        "truncate ",
        "title ",
        " ",
        "\n",
        "/*",
        "*/",
        ",",
        "nil",
        "true",
        "%d",
        "%s",
        "é",
        "\u{0}",
        "-",
        "x",
        "{",
        "}",
        "$v",
        "$i, $v := ",
        "3",
        "\\",
    ];
    let data = sample();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for _ in 0..30_000 {
        let len = rng.below(16);
        let text: String = (0..len).map(|_| PIECES[rng.below(PIECES.len())]).collect();
        if let Ok(t) = Template::parse(&text) {
            parsed += 1;
            let _ = t.execute(&data);
        }
        // Truncated inputs hit every "unexpected EOF" path.
        for cut in (0..text.len())
            .filter(|&i| text.is_char_boundary(i))
            .step_by(7)
        {
            if let Ok(t) = Template::parse(&text[..cut]) {
                let _ = t.execute(&data);
            }
        }
    }
    assert!(parsed > 1000, "only {parsed} garbage templates parsed");
}

/// An image inspect document as kiln prints it, for the typed tests.
fn inspect_sample(healthcheck: &Value) -> Value {
    json!({
        "Id": "sha256:abc",
        "RepoTags": ["app:1"],
        "RepoDigests": [],
        "Parent": "",
        "Comment": "",
        "Created": "2026-12-06T01:42:43.61159162Z",
        "DockerVersion": "",
        "Author": "",
        "Config": {
            "Hostname": "", "Domainname": "", "User": "",
            "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
            "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
            "Tty": false, "OpenStdin": false, "StdinOnce": false,
            "Env": ["A=1", "B=2"],
            "Cmd": null,
            "Healthcheck": healthcheck,
            "ArgsEscaped": false,
            "Image": "",
            "Volumes": {"/data": {}},
            "WorkingDir": "",
            "Entrypoint": null,
            "OnBuild": null,
            "Labels": {"b": "2", "a": "1"},
            "StopSignal": "",
            "Shell": null
        },
        "Architecture": "amd64",
        "Variant": "",
        "Os": "linux",
        "Size": 1_984_241,
        "RootFS": {"Type": "layers", "Layers": ["sha256:l1"]},
        "Descriptor": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:m"}
    })
}

fn typed(template: &str, data: &Value) -> String {
    let parsed = Template::parse(template).unwrap_or_else(|e| panic!("parse {template:?}: {e}"));
    parsed
        .execute_typed(data, &super::IMAGE_INSPECT)
        .unwrap_or_else(|e| panic!("execute {template:?}: {e}"))
}

/// Expected outputs are what Docker 20.10 printed for an image built with
/// the same EXPOSE, ENV, LABEL, VOLUME and HEALTHCHECK (issue 16).
#[test]
fn typed_inspect_prints_like_docker() {
    let health = json!({
        "Test": ["CMD-SHELL", "curl -f localhost"],
        "Interval": 30_000_000_000_u64,
        "Timeout": 3_000_000_000_u64
    });
    let with = inspect_sample(&health);
    let without = inspect_sample(&Value::Null);
    for (template, want) in [
        ("{{.Config.ExposedPorts}}", "map[53/udp:{} 80/tcp:{}]"),
        (
            "{{.Config.Healthcheck}}",
            "{[CMD-SHELL curl -f localhost] 30s 3s 0s 0}",
        ),
        (
            "{{print .Config.Healthcheck}}",
            "&{[CMD-SHELL curl -f localhost] 30s 3s 0s 0}",
        ),
        ("{{.Config.Env}}", "[A=1 B=2]"),
        ("{{.Config.Labels}}", "map[a:1 b:2]"),
        ("{{.Config.Volumes}}", "map[/data:{}]"),
        (
            "{{.Config.Entrypoint}} {{.Config.Cmd}} {{.Config.OnBuild}}",
            "[] [] []",
        ),
        ("{{.Size}}", "1984241"),
        ("{{.Created}}", "2026-12-06T01:42:43.61159162Z"),
        (
            "{{printf \"%v|%s|%d|%q\" .Config.Healthcheck.Interval .Config.Healthcheck.Interval .Config.Healthcheck.Interval .Config.Healthcheck.Interval}}",
            "30s|30s|30000000000|\"30s\"",
        ),
        (
            "{{range $k, $v := .Config.ExposedPorts}}{{$k}}={{$v}};{{end}}",
            "53/udp={};80/tcp={};",
        ),
        ("{{range .Config.ExposedPorts}}{{.}}{{end}}", "{}{}"),
        ("{{.Config.Labels.zz}}", "<no value>"),
        ("{{index .Config.Labels \"a\"}}", "1"),
        ("{{.RootFS}}", "{layers [sha256:l1] }"),
        ("{{.Config.MacAddress}}|{{.ID}}", "|sha256:abc"),
        // `Id` is not the Go field's name: the JSON run answers.
        ("{{.Id}}", "sha256:abc"),
        (
            "{{.Config.StopTimeout}} {{.Config.NetworkDisabled}}",
            "<nil> false",
        ),
        (
            "{{printf \"%T %T %T\" .Config.Cmd .Config .Config.Healthcheck.Interval}}",
            "strslice.StrSlice *container.Config time.Duration",
        ),
        ("{{with .Config.Healthcheck}}{{.Interval}}{{end}}", "30s"),
        ("{{eq .Config.Healthcheck.Interval 30000000000}}", "true"),
        (
            "{{json .Config.Healthcheck}}",
            r#"{"Test":["CMD-SHELL","curl -f localhost"],"Interval":30000000000,"Timeout":3000000000}"#,
        ),
        // Not a Go field: the whole template runs over the plain JSON.
        ("{{.Descriptor.digest}}", "sha256:m"),
    ] {
        assert_eq!(typed(template, &with), want, "template {template:?}");
    }
    for (template, want) in [
        ("{{.Config.Healthcheck}}", "<nil>"),
        ("{{print .Config.Healthcheck}}", "<nil>"),
        ("{{if .Config.Healthcheck}}y{{else}}n{{end}}", "n"),
        ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ] {
        assert_eq!(typed(template, &without), want, "template {template:?}");
    }
    let mut empty = inspect_sample(&Value::Null);
    for key in ["ExposedPorts", "Env", "Labels", "Volumes"] {
        empty["Config"][key] = Value::Null;
    }
    assert_eq!(
        typed(
            "{{.Config.Cmd}} {{.Config.Env}} {{.Config.Labels}} {{.Config.ExposedPorts}} {{.Config.Volumes}} {{.Config.Shell}}",
            &empty
        ),
        "[] [] map[] map[] map[] []"
    );
    assert_eq!(
        typed("{{if .Config.ExposedPorts}}y{{else}}n{{end}}", &empty),
        "n"
    );
    // A nested struct prints all its fields in Go's order; the nested
    // pointer shows its value where Go would show an address.
    assert_eq!(
        typed("{{.Config}}", &with),
        "{   false false false map[53/udp:{} 80/tcp:{}] false false false [A=1 B=2] [] \
         &{[CMD-SHELL curl -f localhost] 30s 3s 0s 0} false  map[/data:{}]  [] false  [] \
         map[a:1 b:2]  <nil> []}"
    );
}

#[test]
fn typed_durations_print_as_go_durations() {
    let mut health = json!({"Test": ["CMD", "true"], "Interval": 90_000_000_000_u64,
        "Timeout": 1_500_000_000, "StartPeriod": 500_000_000, "Retries": 3});
    let data = inspect_sample(&health);
    assert_eq!(
        typed("{{.Config.Healthcheck}}", &data),
        "{[CMD true] 1m30s 1.5s 500ms 3}"
    );
    for (nanos, want) in [
        (0_i64, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (2_000_000, "2ms"),
        (3_723_000_000_000, "1h2m3s"),
        (-1_500_000_000, "-1.5s"),
    ] {
        health["Interval"] = json!(nanos);
        let data = inspect_sample(&health);
        assert_eq!(
            typed("{{.Config.Healthcheck.Interval}}", &data),
            want,
            "{nanos}ns"
        );
    }
}

/// Docker runs a template that fails on the typed value again over the
/// plain JSON, and reports that run's error.
#[test]
fn typed_failures_fall_back_to_the_json() {
    let data = inspect_sample(&Value::Null);
    let error = |template: &str| {
        Template::parse(template)
            .unwrap()
            .execute_typed(&data, &super::IMAGE_INSPECT)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        error("{{.Config.Foo}}"),
        r#"template: :1:9: executing "" at <.Config.Foo>: map has no entry for key "Foo""#
    );
    // `nat.PortSet` is not indexed by a plain string in Go: the typed run
    // fails and the JSON run gives the untyped answer.
    assert_eq!(
        typed("{{index .Config.ExposedPorts \"80/tcp\"}}", &data),
        "map[]"
    );
}
