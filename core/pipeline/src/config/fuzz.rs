//! Fuzzing the pipeline file, the one input of this crate that an admin (or an environment)
//! writes: arbitrary files and environments never panic, a variable's value is the text of its
//! one string whatever it holds (quotes, line breaks, `]`, `[load]`, `${X}`), and no problem
//! shows a secret, whether it came through a variable or was written in a URL.
//!
//! A fixed, small number of cases per run; `PROPTEST_CASES=10000 cargo test -p
//! rosterflow-pipeline fuzz` tries more. A failing case is kept in `proptest-regressions/`.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use toml::de::DeValue;

use super::vars;
use super::*;

/// `cases` per test, unless `PROPTEST_CASES` says otherwise.
fn cases(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// A marker that a test can look for in every output: no message may show it. It comes in
/// variables' values and as the password of URLs written in the file, never elsewhere (a
/// problem may quote what the file says).
const CANARY: &str = "rf-canary-7d1e";

/// Text that stresses TOML and the interpolation: quotes of every kind, escapes, brackets,
/// line breaks, `${`, `$$`, control characters and other scripts.
fn nasty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("\"\"\"".to_owned()),
        Just("'''".to_owned()),
        Just("\\".to_owned()),
        Just("\\u0000".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("]".to_owned()),
        Just("[load]".to_owned()),
        Just("[[transform]]".to_owned()),
        Just("\ndatabase = \"postgres://evil\"\n".to_owned()),
        Just("\"\nname = \"evil".to_owned()),
        Just("', x = '".to_owned()),
        Just("\", x = \"".to_owned()),
        Just("#".to_owned()),
        Just("=".to_owned()),
        Just("${".to_owned()),
        Just("${OTHER}".to_owned()),
        Just("$$".to_owned()),
        Just("}".to_owned()),
        Just("\u{0}".to_owned()),
        Just("\u{7f}".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("é漢🦀".to_owned()),
        "[a-z:/@.]{0,12}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// A TOML value as text: well formed or not.
fn value_text() -> impl Strategy<Value = String> {
    let string = nasty().prop_map(|s| format!("{s:?}"));
    prop_oneof![
        Just("\"${A}\"".to_owned()),
        Just("\"x${B:-fallback}y\"".to_owned()),
        Just("'${A}'".to_owned()),
        Just("\"\"\"\n${A}\n\"\"\"".to_owned()),
        Just("[\"${A}\", \"${B}\"]".to_owned()),
        Just("{ k = \"${A}\" }".to_owned()),
        Just("${A}".to_owned()),
        Just("\"${A\"".to_owned()),
        Just("\"${}\"".to_owned()),
        Just("\"${A-B}\"".to_owned()),
        Just("\"sqlite://x.db\"".to_owned()),
        Just("\"postgres://u:${A}@127.0.0.1:1/x\"".to_owned()),
        Just(format!("\"https://u:{CANARY}@h/x\"")),
        Just(format!("\"http s://u:{CANARY}@h/x\"")),
        Just("\"5a0c91b95c7cc000010d417c\"".to_owned()),
        Just("\"clever\"".to_owned()),
        Just("\"clever_replay\"".to_owned()),
        Just("\"oneroster_csv\"".to_owned()),
        Just("\"oneroster_rest\"".to_owned()),
        Just("\"plugin\"".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("1979-05-27T07:32:00Z".to_owned()),
        string,
        nasty(),
    ]
}

/// Lines of a pipeline file: the real tables and keys, misspelt ones, and garbage.
fn file_text() -> impl Strategy<Value = String> {
    let table = prop::sample::select(vec![
        "[pipeline]",
        "[source]",
        "[load]",
        "[safety]",
        "[email]",
        "[export]",
        "[schedule]",
        "[sign_in]",
        "[[transform]]",
        "[source.storage_options]",
        "[load",
        "[[load]]",
    ])
    .prop_map(str::to_owned);
    let key = prop::sample::select(vec![
        "name",
        "type",
        "token",
        "base_url",
        "database",
        "district_id",
        "dir",
        "path",
        "limit",
        "client_id",
        "client_secret",
        "token_url",
        "host",
        "password",
        "username",
        "from",
        "app_url",
        "cron",
        "timezone",
        "subjects",
        "archive_max_percent",
        "\"${A}\"",
        "a.b",
        "",
    ])
    .prop_map(str::to_owned);
    let line = prop_oneof![
        3 => (key, value_text()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => table,
        1 => nasty(),
        1 => Just("# ${A} in a comment".to_owned()),
    ];
    prop::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
}

/// A valid pipeline, one line per entry, that the mutations start from.
const VALID: &[&str] = &[
    "[pipeline]",
    "name = \"springfield\"",
    "district_id = \"5a0c91b95c7cc000010d417c\"",
    "[source]",
    "type = \"clever\"",
    "token = \"${CLEVER_TOKEN}\"",
    "base_url = \"http://127.0.0.1:1\"",
    "limit = 500",
    "sync = \"events\"",
    "[load]",
    "database = \"${FRECKLE_DB:-sqlite://x.db}\"",
    "[safety]",
    "archive_max_percent = 10.0",
    "[[transform]]",
    "type = \"filter\"",
    "[email]",
    "host = \"smtp.example.org\"",
    "from = \"rosterflow@example.org\"",
    "app_url = \"https://app.example.org\"",
    "username = \"u\"",
    "password = \"${A}\"",
    "[schedule]",
    "cron = \"30 2 * * *\"",
];

/// The valid pipeline with a few lines removed, doubled, moved, given another value, or
/// joined by a new line.
fn mutated_pipeline() -> impl Strategy<Value = String> {
    #[derive(Debug, Clone)]
    enum Mutation {
        Remove(usize),
        Double(usize),
        Swap(usize, usize),
        Revalue(usize, String),
        Insert(usize, String),
        Truncate(usize),
    }
    let at = || 0..VALID.len();
    let mutation = prop_oneof![
        at().prop_map(Mutation::Remove),
        at().prop_map(Mutation::Double),
        (at(), at()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (at(), value_text()).prop_map(|(i, v)| Mutation::Revalue(i, v)),
        (at(), file_text()).prop_map(|(i, line)| Mutation::Insert(i, line)),
        any::<usize>().prop_map(Mutation::Truncate),
    ];
    prop::collection::vec(mutation, 0..4).prop_map(|mutations| {
        let mut lines: Vec<String> = VALID.iter().map(|l| l.to_string()).collect();
        let mut truncate = None;
        for mutation in mutations {
            let len = lines.len().max(1);
            match mutation {
                Mutation::Remove(i) if !lines.is_empty() => {
                    lines.remove(i % len);
                }
                Mutation::Double(i) if !lines.is_empty() => {
                    let line = lines[i % len].clone();
                    lines.insert(i % len, line);
                }
                Mutation::Swap(a, b) if !lines.is_empty() => lines.swap(a % len, b % len),
                Mutation::Revalue(i, value) if !lines.is_empty() => {
                    let line = &mut lines[i % len];
                    if let Some((key, _)) = line.split_once(" = ") {
                        *line = format!("{key} = {value}");
                    }
                }
                Mutation::Insert(i, line) => lines.insert(i % (lines.len() + 1), line),
                Mutation::Truncate(at) => truncate = Some(at),
                _ => {}
            }
        }
        let text = lines.join("\n");
        match truncate {
            // Cut anywhere, even inside a character: what a partial write leaves.
            Some(at) => {
                let at = at % (text.len() + 1);
                String::from_utf8_lossy(&text.as_bytes()[..at]).into_owned()
            }
            None => text,
        }
    })
}

/// An environment of a few variables, some of them carrying the canary.
fn environment() -> impl Strategy<Value = BTreeMap<String, String>> {
    let value = prop_oneof![
        nasty(),
        nasty().prop_map(|s| format!("{s}{CANARY}")),
        Just(String::new()),
    ];
    let name = prop::sample::select(vec!["A", "B", "OTHER", "CLEVER_TOKEN", "FRECKLE_DB"]);
    prop::collection::btree_map(name.prop_map(str::to_owned), value, 0..5)
}

/// The longest problem: one line of a terminal's scrollback, whatever the file holds (a
/// problem quotes a value cut short).
const LONGEST_PROBLEM: usize = 600;

/// Parses `text` both ways a command does; whatever comes back must be a pipeline or problems
/// that show no secret.
fn check(text: &str, env: &BTreeMap<String, String>) -> Result<(), TestCaseError> {
    for secrets in [Secrets::Required, Secrets::SourceDeferred] {
        match parse_with(Path::new("p.toml"), text, env, secrets) {
            Ok(pipeline) => {
                let debug = format!("{pipeline:?}");
                prop_assert!(!debug.contains(CANARY), "Debug shows a secret: {debug}");
            }
            Err(error) => {
                let message = error.to_string();
                prop_assert!(!message.is_empty());
                prop_assert!(!message.contains(CANARY), "a secret shown: {message}");
                if let ConfigError::Invalid { problems, .. } = &error {
                    prop_assert!(!problems.is_empty());
                    for problem in problems {
                        let message = &problem.message;
                        prop_assert!(
                            !message.contains(['\n', '\r']),
                            "a problem of several lines: {:?}",
                            message
                        );
                        prop_assert!(
                            message.chars().count() <= LONGEST_PROBLEM,
                            "a problem of {} characters: {:?}",
                            message.chars().count(),
                            message
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>(), env in environment()) {
        check(&text, &env)?;
    }

    #[test]
    fn mutated_pipelines_never_panic_nor_show_a_secret(
        text in mutated_pipeline(),
        env in environment(),
    ) {
        check(&text, &env)?;
    }

    #[test]
    fn arbitrary_pipeline_files_never_panic_nor_show_a_secret(
        text in file_text(),
        env in environment(),
    ) {
        check(&text, &env)?;
    }
}

/// The file every injection case starts from: each `${V}` is where a value lands.
const TEMPLATE: &str = r#"# ${V} in a comment is not read
[pipeline]
name = "springfield"

[source]
type = "clever"
token = "${V}"
base_url = 'http://127.0.0.1:1/${V}'

[load]
database = "sqlite://${V}.db"

[[transform]]
type = "filter"
subjects = ["""${V}""", '''${V}''', "x"]

[email]
host = "smtp.example.org"
from = "rosterflow@example.org"
app_url = "https://app.example.org"
username = "u"
password = "${V}"
"#;

/// Every key of a parsed document with its value: strings, and the type of anything else.
fn flatten(prefix: &str, value: &DeValue<'_>, into: &mut Vec<(String, String)>) {
    match value {
        DeValue::Table(table) => {
            for (key, item) in table.iter() {
                flatten(&format!("{prefix}.{}", key.get_ref()), item.get_ref(), into);
            }
        }
        DeValue::Array(array) => {
            for (i, item) in array.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item.get_ref(), into);
            }
        }
        DeValue::String(s) => into.push((prefix.to_owned(), s.to_string())),
        other => into.push((prefix.to_owned(), other.type_str().to_owned())),
    }
}

fn document(text: &str, value: &str) -> Vec<(String, String)> {
    let env = BTreeMap::from([("V".to_owned(), value.to_owned())]);
    let interpolated = vars::interpolate(text, &env).expect("the template parses");
    assert!(interpolated.missing.is_empty());
    let mut keys = Vec::new();
    flatten(
        "",
        &DeValue::Table(interpolated.root.into_inner()),
        &mut keys,
    );
    keys
}

proptest! {
    #![proptest_config(cases(256))]

    /// Whatever `V` holds, the document has the same keys as with a plain value, and each
    /// string that named `${V}` holds exactly `V` where it named it.
    #[test]
    fn a_value_is_the_text_of_its_one_string(value in nasty().prop_filter("set", |v| !v.is_empty())) {
        let plain = document(TEMPLATE, "plain");
        let tried = document(TEMPLATE, &value);
        prop_assert_eq!(plain.len(), tried.len());
        for ((key, plain), (tried_key, tried)) in plain.iter().zip(&tried) {
            prop_assert_eq!(key, tried_key);
            prop_assert_eq!(&plain.replace("plain", &value), tried);
        }
    }

    /// Through to the pipeline: the token is the value and nothing else changed, or the file
    /// is refused with a problem that does not show it.
    #[test]
    fn a_token_cannot_change_the_pipeline(value in nasty().prop_filter("set", |v| !v.trim().is_empty())) {
        let text = "[pipeline]\nname = \"springfield\"\n\n[source]\ntype = \"clever\"\n\
                    token = \"${V}\"\nlimit = 500\n\n[load]\ndatabase = \"sqlite://x.db\"\n";
        let env = BTreeMap::from([("V".to_owned(), format!("{value}{CANARY}"))]);
        let pipeline = parse(Path::new("p.toml"), text, &env).expect("any token is a token");
        let SourceConfig::Clever(clever) = &pipeline.file.source else {
            panic!("the source stays a clever source");
        };
        prop_assert_eq!(clever.token.expose(), format!("{value}{CANARY}"));
        prop_assert_eq!(clever.limit, 500);
        prop_assert_eq!(&clever.base_url, "https://api.clever.com");
        prop_assert_eq!(&pipeline.file.load.database, "sqlite://x.db");
        prop_assert_eq!(pipeline.name(), "springfield");
        prop_assert!(pipeline.file.transform.is_empty() && pipeline.file.email.is_none());
        let debug = format!("{pipeline:?}");
        prop_assert!(!debug.contains(CANARY), "{}", debug);
    }
}

/// The injections a text substitution let through, each now the literal value of its key.
#[test]
fn classic_injections_stay_in_their_string() {
    for value in [
        "x\"\n[load]\ndatabase = \"postgres://evil@h/x",
        "x', base_url = 'http://evil",
        "x\", base_url = \"http://evil",
        "x\"\"\"\n[load]\n",
        "x'''\n[load]\n",
        "]\n[load]\n",
        "${OTHER}",
        "$${V}",
    ] {
        let text = "[pipeline]\nname = \"n\"\n[source]\ntype = \"clever\"\n\
                    token = '${V}'\n[load]\ndatabase = \"sqlite://x.db\"\n";
        let env = BTreeMap::from([
            ("V".to_owned(), value.to_owned()),
            ("OTHER".to_owned(), "other".to_owned()),
        ]);
        let pipeline = parse(Path::new("p.toml"), text, &env).expect(value);
        let SourceConfig::Clever(clever) = &pipeline.file.source else {
            panic!("a clever source");
        };
        assert_eq!(clever.token.expose(), value);
        assert_eq!(clever.base_url, "https://api.clever.com");
        assert_eq!(pipeline.file.load.database, "sqlite://x.db");
    }
}

/// Every place a pipeline holds a secret, filled with the canary: `Debug` of the pipeline and
/// every problem of a file that is refused never show it.
#[test]
fn secrets_never_show_in_debug_or_problems() {
    let env = BTreeMap::from([
        ("CLEVER_TOKEN".to_owned(), format!("tok-{CANARY}")),
        (
            "DB".to_owned(),
            format!("postgres://u:{CANARY}@127.0.0.1:1/x"),
        ),
        ("SMTP_PASSWORD".to_owned(), format!("pw-{CANARY}")),
    ]);
    let text = r#"
[pipeline]
name = "springfield"

[source]
type = "clever"
token = "${CLEVER_TOKEN}"

[load]
database = "${DB}"

[email]
host = "smtp.example.org"
from = "rosterflow@example.org"
app_url = "https://app.example.org"
username = "u"
password = "${SMTP_PASSWORD}"
"#;
    let pipeline = parse(Path::new("p.toml"), text, &env).expect("valid");
    let debug = format!("{pipeline:?} {:#?}", pipeline.file);
    assert!(!debug.contains(CANARY), "{debug}");
    assert!(debug.contains("postgres://***@127.0.0.1:1/x"), "{debug}");

    let rest = r#"
[pipeline]
name = "springfield"
district_id = "springfield"

[source]
type = "oneroster_rest"
base_url = "https://sis.example.org/ims/oneroster/v1p2"
token_url = "https://sis.example.org/oauth/token"
client_id = "id"
client_secret = "${CLEVER_TOKEN}"

[load]
database = "postgres://u:rf-canary-7d1e@127.0.0.1:1/x"
"#;
    let pipeline = parse(Path::new("p.toml"), rest, &env).expect("valid");
    let debug = format!("{pipeline:?}");
    assert!(!debug.contains(CANARY), "{debug}");
    // sqlx takes the password in the query too.
    let queried = rest.replace(
        "postgres://u:rf-canary-7d1e@127.0.0.1:1/x",
        "postgres://u@127.0.0.1:1/x?sslmode=disable&password=rf-canary-7d1e",
    );
    let pipeline = parse(Path::new("p.toml"), &queried, &env).expect("valid");
    let debug = format!("{pipeline:?} {:?}", pipeline.file.load);
    assert!(!debug.contains(CANARY), "{debug}");
    assert!(
        debug.contains("postgres://***@127.0.0.1:1/x?sslmode=disable&password=***"),
        "{debug}"
    );

    // Values in the wrong place, each quoted by the problem it makes.
    for (key, value) in [
        ("limit", "\"${CLEVER_TOKEN}\""),
        ("sync", "\"${CLEVER_TOKEN}\""),
        ("district_id", "\"${CLEVER_TOKEN}\""),
        ("base_url", "\"${CLEVER_TOKEN}\""),
        ("base_url", "\"ftp://u:rf-canary-7d1e@h/x\""),
        ("base_url", "\"https://u:rf-canary-7d1e@h/x y\""),
    ] {
        let text = format!(
            "[pipeline]\nname = \"n\"\n[source]\ntype = \"clever\"\ntoken = \"t\"\n\
             {key} = {value}\n[load]\ndatabase = \"${{DB}}\"\n"
        );
        let message = parse(Path::new("p.toml"), &text, &env)
            .expect_err(&text)
            .to_string();
        assert!(!message.contains(CANARY), "{key} = {value}: {message}");
    }
    let text = "[pipeline]\nname = \"n\"\n[source]\ntype = \"clever\"\ntoken = \"t\"\n\
                [load]\ndatabase = \"${CLEVER_TOKEN}\"\n";
    let message = parse(Path::new("p.toml"), text, &env)
        .expect_err("not a database URL")
        .to_string();
    assert!(message.contains("load.database"), "{message}");
    assert!(!message.contains(CANARY), "{message}");
}

/// A secret shorter than a value worth hiding elsewhere (6 characters) is hidden all the same
/// in each secret field: quoted by the problem it makes, it would show whole.
#[test]
fn a_short_secret_never_shows_in_problems() {
    let short = "k9Q";
    let env = BTreeMap::from([("S".to_owned(), short.to_owned())]);
    let clever = "[pipeline]\nname = \"n\"\n[source]\ntype = \"clever\"\n";
    let rest = "[pipeline]\nname = \"n\"\ndistrict_id = \"d\"\n[source]\ntype = \"oneroster_rest\"\n\
                base_url = \"https://sis.example.org/ims/oneroster/v1p2\"\n\
                token_url = \"https://sis.example.org/oauth/token\"\nclient_id = \"id\"\n";
    let email = "[email]\nhost = \"smtp.example.org\"\nfrom = \"rf@example.org\"\n\
                 app_url = \"https://app.example.org\"\nusername = \"u\"\n";
    let database = "[load]\ndatabase = \"sqlite://x.db\"\n";
    // Each secret field given the short secret, in a file refused for a problem that quotes
    // it (a field of the wrong type, a URL that is not one).
    for (field, text) in [
        (
            "source.token",
            format!("{clever}token = \"${{S}}\"\nlimit = \"${{S}}\"\n{database}"),
        ),
        (
            "source.client_secret",
            format!("{rest}client_secret = \"${{S}}\"\nlimit = \"${{S}}\"\n{database}"),
        ),
        (
            "email.password",
            format!(
                "{clever}token = \"t\"\n{database}{email}password = \"${{S}}\"\n\
                 throttle_per_minute = \"${{S}}\"\n"
            ),
        ),
        (
            "load.database",
            format!("{clever}token = \"t\"\n[load]\ndatabase = \"${{S}}\"\n"),
        ),
    ] {
        let message = parse(Path::new("p.toml"), &text, &env)
            .expect_err(field)
            .to_string();
        assert!(!message.contains(short), "{field}: {message}");
        assert!(
            message.contains("${S}"),
            "{field} names its variable: {message}"
        );
    }
}
