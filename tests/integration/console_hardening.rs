//! The console as an attacker would try it, through the binary: every answer hardened against
//! framing and sniffing; guessing the admin token limited per client and overall while the
//! operator can still sign in; a forged log line; a token of spaces; a database password kept out
//! of every output; a database that cannot be reached; a session cookie the browser dropped.

use std::net::IpAddr;
use std::path::Path;

use rosterflow_tests::district::demo_dir;

use crate::serve::{Service, free_port};
use crate::util::{Backend, TestDb, pipeline_text, replay_source, rosterflow};

const TOKEN: &str = "operator-token-0123456789";
const SECRET_URL: &str = "postgres://u:secretpw@127.0.0.1:1/x";
/// The same password as sqlx also takes it: in the query.
const SECRET_QUERY_URL: &str = "postgres://u@127.0.0.1:3/z?sslmode=disable&password=secretpw";

/// A service of the demo district, with the console on.
fn service(db: &TestDb, dir: &Path) -> Service {
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("the pipeline directory");
    let text = pipeline_text("demo", &replay_source(&demo_dir()), &db.url, "");
    std::fs::write(pipelines.join("demo.toml"), text).expect("write the pipeline");
    Service::start_at(
        free_port(),
        dir,
        &db.url,
        "console",
        &[],
        &[("ROSTERFLOW_ADMIN_TOKEN", TOKEN)],
    )
}

/// A client whose requests come from `from` (a loopback address of its own), following no
/// redirect.
fn client(from: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(from.parse::<IpAddr>().expect("an address"))
        .build()
        .expect("a client")
}

async fn login(client: &reqwest::Client, port: u16, user: &str, token: &str) -> reqwest::Response {
    client
        .post(format!("http://127.0.0.1:{port}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("user={user}&token={token}"))
        .send()
        .await
        .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_holds_against_framing_guessing_and_forged_logs() {
    let db = TestDb::new(Backend::Sqlite).await;
    let work = tempfile::tempdir().expect("a directory");
    let service = service(&db, work.path());
    let port = service.port;
    let base = format!("http://127.0.0.1:{port}");

    // Every answer, a page or an error, is hardened.
    for path in ["/login", "/", "/metrics", "/runs/1"] {
        let answer = client("127.0.0.1")
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("an answer");
        let headers = answer.headers();
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
    }

    // A name with a line break cannot forge a line of the log.
    let forged = login(&client("127.0.0.1"), port, "x%0AFORGED%20line", "wrong").await;
    assert_eq!(forged.status(), 401);
    assert!(
        !service.log().lines().any(|line| line.starts_with("FORGED")),
        "{}",
        service.log()
    );

    // Guessing: a client has 10 wrong tokens a minute, then is refused without its token being
    // checked, even the right one.
    let mallory = client("127.0.0.2");
    let tokens: Vec<String> = (0..10).map(|i| format!("guess-{i}")).collect();
    let guesses = tokens
        .iter()
        .map(|token| login(&mallory, port, "mallory", token));
    let statuses: Vec<u16> = futures_util::future::join_all(guesses)
        .await
        .iter()
        .map(|answer| answer.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 401).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(login(&mallory, port, "mallory", TOKEN).await.status(), 429);
    // The operator, from elsewhere, still signs in.
    let operator = login(&client("127.0.0.3"), port, "ops", TOKEN).await;
    assert_eq!(operator.status(), 303);
    assert_eq!(operator.headers()["location"], "/?signed_in=1");

    // Signed in, but the browser dropped the cookie (no HTTPS): a page that says so, not a loop
    // back to sign-in.
    let dropped = client("127.0.0.1")
        .get(format!("{base}/?signed_in=1"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(dropped.status(), 400);
    assert!(
        dropped
            .text()
            .await
            .unwrap()
            .contains("did not send the session cookie")
    );
}

#[test]
fn a_token_of_spaces_and_a_database_password_never_shown() {
    let work = tempfile::tempdir().expect("a directory");
    let pipelines = work.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("the pipeline directory");
    let dir = pipelines.to_str().unwrap();
    let write = |name: &str, database: &str| {
        let text = pipeline_text(name, &replay_source(&demo_dir()), database, "");
        std::fs::write(pipelines.join(format!("{name}.toml")), text).expect("write");
    };
    let serve = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["serve", "--pipelines", dir, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        rosterflow(&args, env)
    };

    // The database cannot be reached: said at once, without its password.
    write("a", SECRET_URL);
    let started = std::time::Instant::now();
    let (code, out, err) = serve(&[], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("Connection refused"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(!format!("{out}{err}").contains("secretpw"), "{out}{err}");

    // Pipelines of several databases: listed, without passwords.
    write("b", &SECRET_URL.replace(":1/x", ":2/y"));
    write("c", SECRET_QUERY_URL);
    let (code, out, err) = serve(&[], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("several databases"), "{err}");
    assert!(err.contains("***@127.0.0.1:1/x"), "{err}");
    assert!(
        err.contains("***@127.0.0.1:3/z?sslmode=disable&password=***"),
        "{err}"
    );
    assert!(!format!("{out}{err}").contains("secretpw"), "{out}{err}");

    // An admin token of spaces is refused at start.
    let database = format!("sqlite://{}/freckle.db", work.path().display());
    let (code, _, err) = serve(
        &["--database", &database],
        &[("ROSTERFLOW_ADMIN_TOKEN", "                ")],
    );
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("ROSTERFLOW_ADMIN_TOKEN is shorter"), "{err}");
}

/// A pipeline file of another database, served beside others: the console's front page and the
/// log name it without its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_password_stays_out_of_the_console_and_the_log() {
    let db = TestDb::new(Backend::Sqlite).await;
    let work = tempfile::tempdir().expect("a directory");
    let pipelines = work.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("the pipeline directory");
    let text = pipeline_text("elsewhere", &replay_source(&demo_dir()), SECRET_URL, "");
    std::fs::write(pipelines.join("elsewhere.toml"), text).expect("write");
    let text = pipeline_text("queried", &replay_source(&demo_dir()), SECRET_QUERY_URL, "");
    std::fs::write(pipelines.join("queried.toml"), text).expect("write");
    let service = service(&db, work.path());
    let operator = client("127.0.0.1");
    let signed_in = login(&operator, service.port, "ops", TOKEN).await;
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let front = operator
        .get(format!("http://127.0.0.1:{}/", service.port))
        .header("cookie", cookie)
        .send()
        .await
        .expect("an answer")
        .text()
        .await
        .unwrap();
    assert!(front.contains("cannot be served"), "{front}");
    assert!(front.contains("***@127.0.0.1:1/x"), "{front}");
    assert!(front.contains("password=***"), "{front}");
    assert!(!front.contains("secretpw"));
    assert!(!service.log().contains("secretpw"), "{}", service.log());
}

/// A console link opened from an email lands on its page once signed in, and only on a page of
/// the console; the name is taken as a person writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_lands_on_its_page_after_sign_in() {
    let db = TestDb::new(Backend::Sqlite).await;
    let work = tempfile::tempdir().expect("a directory");
    let service = service(&db, work.path());
    let base = format!("http://127.0.0.1:{}", service.port);
    let browser = client("127.0.0.1");

    let asked = browser
        .get(format!("{base}/pipelines/demo?tab=runs"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(asked.status(), 303);
    let to_login = asked.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(to_login, "/login?next=%2Fpipelines%2Fdemo%3Ftab%3Druns");
    let form = browser
        .get(format!("{base}{to_login}"))
        .send()
        .await
        .expect("an answer")
        .text()
        .await
        .unwrap();
    assert!(
        form.contains(r#"name="next" value="/pipelines/demo?tab=runs""#),
        "{form}"
    );

    let sign_in = |next: &'static str| {
        let browser = browser.clone();
        let base = base.clone();
        async move {
            browser
                .post(format!("{base}/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("user=Dana%20Admin&token={TOKEN}&next={next}"))
                .send()
                .await
                .expect("an answer")
        }
    };
    let signed_in = sign_in("%2Fpipelines%2Fdemo%3Ftab%3Druns").await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(
        signed_in.headers()["location"],
        "/pipelines/demo?tab=runs&signed_in=1"
    );
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = browser
        .get(format!("{base}/pipelines/demo?tab=runs&signed_in=1"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("an answer");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Dana Admin"));

    // Another site is never a landing: the dashboard instead.
    for elsewhere in [
        "%2F%2Fevil.example",
        "https%3A%2F%2Fevil.example",
        "%2F%5Cevil.example",
    ] {
        let signed_in = sign_in(elsewhere).await;
        assert_eq!(
            signed_in.headers()["location"],
            "/?signed_in=1",
            "{elsewhere}"
        );
    }
}
