//! Signing in with Clever in a real browser: headless Chromium (`sign_in_browser.py`) goes from
//! the service's start URL through the simulator's authorize endpoint and back, and lands on a
//! stand-in Freckle app, which exchanges the grant server to server and greets the person. A
//! teacher, then a student, then a district administrator on the same browser (a shared classroom
//! device): each lands as themselves, the administrator in the service's console for their
//! district (whose SameSite=Strict session cookie must be sent after the redirects from Clever).
//! On SQLite.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Html;
use rosterflow_tests::clever_sim::Login;
use rosterflow_tests::district::{Collection, Dataset, Role};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::sign_in::{APP_SECRET, World, small_district};
use crate::util::{Backend, repo};

/// The stand-in Freckle app.
struct App {
    /// The service's `POST /sign-in/grants`.
    exchange: String,
    client: reqwest::Client,
    /// Every account it was handed, in order.
    accounts: Mutex<Vec<Value>>,
}

impl App {
    /// Serves the app on `127.0.0.1:0`; answers its landing URL.
    async fn start(exchange: String) -> (Arc<App>, String) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let app = Arc::new(App {
            exchange,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
            accounts: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the app");
        let address = listener.local_addr().expect("the app's address");
        let router = axum::Router::new()
            .route("/landing", axum::routing::get(landing))
            .with_state(app.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.expect("the app serves") });
        (app, format!("http://{address}/landing"))
    }

    /// Exchanges `grant` at the service: the greeting for the account, or what went wrong.
    async fn greet(&self, grant: &str) -> String {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant", grant)
            .finish();
        let response = match self
            .client
            .post(&self.exchange)
            .bearer_auth(APP_SECRET)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return format!("Sign-in failed: {error}"),
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let account = match serde_json::from_str::<Value>(&text) {
            Ok(account) if status == 200 => account,
            _ => return format!("Sign-in failed: {status} {text}"),
        };
        let greeting = format!(
            "Signed in as {} {} ({})",
            account["first_name"].as_str().unwrap_or("?"),
            account["last_name"].as_str().unwrap_or("?"),
            account["kind"].as_str().unwrap_or("?"),
        );
        self.accounts.lock().expect("the accounts").push(account);
        greeting
    }
}

#[derive(Deserialize)]
struct Landed {
    grant: Option<String>,
}

/// `GET /landing?grant=..`: the app's page for a signed-in person.
async fn landing(State(app): State<Arc<App>>, Query(landed): Query<Landed>) -> Html<String> {
    let greeting = match landed.grant {
        Some(grant) => app.greet(&grant).await,
        None => "Sign-in failed: no grant".to_owned(),
    };
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Freckle</title></head><body><h1 id=\"who\">{}</h1></body></html>",
        escape(&greeting)
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What the app shows `id` signing in as `kind`, from the district's records.
fn greeting(dataset: &Dataset, id: &str, kind: &str) -> String {
    let user = dataset.get(Collection::Users, id).expect("a user");
    let name = |part: &str| user["name"][part].as_str().expect("a name").to_owned();
    format!("Signed in as {} {} ({kind})", name("first"), name("last"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_a_student_and_a_district_admin_sign_in_in_a_browser() {
    let dataset = small_district(34);
    let teacher = dataset.ids_with_role(Role::Teacher)[0].clone();
    let student = dataset.ids_with_role(Role::Student)[0].clone();
    let admin = dataset.ids_with_role(Role::DistrictAdmin)[0].clone();
    let greetings = [
        greeting(&dataset, &teacher, "teacher"),
        greeting(&dataset, &student, "student"),
        // A district administrator lands in the console (the script's word for it).
        "console".to_owned(),
    ];
    assert_ne!(greetings[0], greetings[1]);
    let mut world = World::new(Backend::Sqlite, dataset, "").await;
    let (app, landing) = App::start(world.url("/sign-in/grants")).await;
    world.landing = landing.clone();
    world.start();

    let mut script = tokio::process::Command::new("python3")
        .arg(repo().join("tests/integration/sign_in_browser.py"))
        .arg(world.url("/sign-in/clever"))
        .arg(&landing)
        .args(&greetings)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with selenium, and Debian's chromium and chromedriver (tests/run installs them)");
    let mut stdin = script.stdin.take().expect("the script's stdin");
    let mut lines = BufReader::new(script.stdout.take().expect("its stdout")).lines();
    let mut stderr = script.stderr.take().expect("its stderr");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    // Before each sign-in the script asks to go on: Clever has the next person signed in.
    let mut logins = [
        Login::user(&teacher, "teacher"),
        Login::user(&student, "student"),
        Login::user(&admin, "district_admin"),
    ]
    .into_iter();
    let mut output = String::new();
    let conversation = async {
        while let Ok(Some(line)) = lines.next_line().await {
            output.push_str(&line);
            output.push('\n');
            if line.starts_with("ready ") {
                world.sim.sign_in_as(logins.next());
                let _ = stdin.write_all(b"go\n").await;
                let _ = stdin.flush().await;
            }
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(180), conversation)
        .await
        .is_ok();
    if !finished {
        let _ = script.kill().await;
    }
    let status = script.wait().await.expect("the script's exit");
    let stderr = tokio::time::timeout(Duration::from_secs(10), stderr)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    assert!(
        finished && status.success(),
        "{}: {output}{stderr}\n{}",
        if finished {
            "the browser failed"
        } else {
            "the browser took over 180 s"
        },
        world.service().log()
    );

    // Both went through Clever, and the app was handed their own accounts.
    assert_eq!(world.sim.code_exchanges().0, 3);
    let accounts = app.accounts.lock().expect("the accounts").clone();
    let handed: Vec<(&str, &str)> = accounts
        .iter()
        .map(|account| {
            (
                account["kind"].as_str().unwrap_or(""),
                account["clever_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        handed,
        [("teacher", teacher.as_str()), ("student", student.as_str())]
    );
    assert_eq!(world.db.scalar("SELECT COUNT(*) FROM sign_ins").await, 3);
}
