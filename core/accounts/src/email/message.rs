//! The welcome email itself: plain text, the password-set link, no student data.

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;

use crate::account::PasswordToken;

/// The subject of every welcome email.
pub const WELCOME_SUBJECT: &str = "Welcome to Freckle";

/// What goes into one welcome email.
pub(crate) struct Welcome<'a> {
    pub from: &'a Mailbox,
    pub to: Mailbox,
    /// The teacher's first name, for the greeting.
    pub first_name: Option<&'a str>,
    pub app_base_url: &'a str,
    pub token: &'a PasswordToken,
    pub token_ttl_hours: u32,
    /// The outbox row: it makes the Message-ID, which stays the same if the row is ever sent
    /// twice, so a mail system that deduplicates by Message-ID can drop the repeat.
    pub outbox_id: i64,
}

/// The link a teacher follows to set a password.
pub(crate) fn password_link(app_base_url: &str, token: &PasswordToken) -> String {
    format!("{app_base_url}/set-password?token={}", token.expose())
}

impl Welcome<'_> {
    pub(crate) fn build(self) -> Result<Message, lettre::error::Error> {
        let greeting = match self.first_name.map(clean_name).filter(|n| !n.is_empty()) {
            Some(name) => format!("Hello {name},"),
            None => "Hello,".to_owned(),
        };
        let link = password_link(self.app_base_url, self.token);
        let hours = self.token_ttl_hours;
        let body = format!(
            "{greeting}\n\
             \n\
             Your district now keeps its Freckle rosters in step with its student\n\
             information system through Clever. A Freckle teacher account has been\n\
             created for you, with your classes already set up.\n\
             \n\
             You can always sign in through Clever. If you would also like to sign\n\
             in with your email address and a password, set one here:\n\
             \n\
             {link}\n\
             \n\
             This link works once and expires in {hours} hours. If it has expired,\n\
             ask your district administrator to send a new one.\n\
             \n\
             If you did not expect this email, you can ignore it.\n\
             \n\
             The Freckle team\n"
        );
        let domain = self
            .from
            .email
            .domain()
            .trim_matches(|c| c == '[' || c == ']')
            .to_owned();
        Message::builder()
            .from(self.from.clone())
            .to(self.to)
            .subject(WELCOME_SUBJECT)
            .message_id(Some(format!(
                "<rosterflow.welcome.{}@{domain}>",
                self.outbox_id
            )))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
    }
}

/// A name as it may appear in a greeting: no control characters, at most 100 characters.
fn clean_name(name: &str) -> String {
    name.trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcome_carries_the_link_and_subject() {
        let from: Mailbox = "Freckle <no-reply@freckle.example>"
            .parse()
            .expect("mailbox");
        let to: Mailbox = "ada@school.example".parse().expect("mailbox");
        let token = PasswordToken::generate();
        let message = Welcome {
            from: &from,
            to,
            first_name: Some(" Ada\r\n"),
            app_base_url: "https://app.freckle.example",
            token: &token,
            token_ttl_hours: 72,
            outbox_id: 7,
        }
        .build()
        .expect("builds");
        let text = String::from_utf8(message.formatted()).expect("utf-8");
        // The link line is longer than 76 characters, so the body is quoted-printable: undo
        // its soft line breaks and escapes the way a mail client does.
        let text = text.replace("=\r\n", "").replace("=3D", "=");
        assert!(text.contains("Subject: Welcome to Freckle"), "{text}");
        assert!(text.contains("Hello Ada,"), "{text}");
        assert!(
            text.contains("rosterflow.welcome.7@freckle.example"),
            "{text}"
        );
        let link = format!(
            "https://app.freckle.example/set-password?token={}",
            token.expose()
        );
        assert!(text.contains(&link), "{text}");
        assert!(text.contains("expires in 72 hours"), "{text}");
    }
}
