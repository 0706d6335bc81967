//! The front door's page while the device is not ready: the steps of the start (or the problem
//! that stops it) and the address to open, for any browser. It is served with 503 and
//! `Retry-After`; a small script fetches it again every two seconds, puts the new steps in place,
//! and loads the address afresh once something else answers there (the wizard, the web UI).
//! Without scripts a `<noscript>` refresh does the same.

use maud::{DOCTYPE, Markup, html};

use super::{Phase, Status, StepState};

/// Seconds between two looks at the device's progress.
pub const RETRY_SECS: u64 = 2;

const STYLE: &str = "
body { font: 1rem/1.5 system-ui, sans-serif; margin: 0; color: #1b1b1f; background: #f6f6f8; }
main { max-width: 36rem; margin: 2rem auto; padding: 1.5rem; background: #fff; border-radius: .5rem; }
h1 { font-size: 1.5rem; margin-top: 0; }
ol { padding-left: 0; list-style: none; }
li { padding: .4rem 0; border-bottom: 1px solid #e2e2e6; }
.state { display: inline-block; min-width: 5.5rem; font-weight: 600; }
.done { color: #1d6b32; } .failed, .problem { color: #a11d1d; } .active { color: #174ea6; } .pending { color: #55555c; }
.problem { font-weight: 600; }
@media (prefers-color-scheme: dark) {
  body { background: #111114; color: #ececf1; } main { background: #1c1c21; }
  li { border-color: #34343b; } .done { color: #7ad591; } .failed, .problem { color: #ff9b9b; }
  .active { color: #9ec1ff; } .pending { color: #b4b4bd; }
}";

/// Fetches the page again and swaps its `<main>` in; once the answer is not this page (the
/// wizard is there), loads it.
const SCRIPT: &str = "
const look = async () => {
  try {
    const answer = await fetch(location.href, { cache: 'no-store' });
    if (answer.status !== 503) { location.reload(); return; }
    const page = new DOMParser().parseFromString(await answer.text(), 'text/html');
    const fresh = page.querySelector('main'), here = document.querySelector('main');
    if (fresh && here && fresh.innerHTML !== here.innerHTML) here.replaceWith(fresh);
  } catch (e) { /* the device is restarting its server: look again */ }
  setTimeout(look, RETRY);
};
setTimeout(look, RETRY);";

fn script() -> String {
    SCRIPT.replace("RETRY", &(RETRY_SECS * 1000).to_string())
}

/// The page's Content-Security-Policy: nothing but its own inline style and script (by their
/// hashes) and fetching itself again.
pub fn content_security_policy() -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = |text: &str| base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(STYLE),
        hash(&script())
    )
}

pub fn html(status: &Status) -> Markup {
    let title = match status.phase {
        Phase::Blocked => "PIC cannot start",
        Phase::Starting | Phase::Ready => "PIC is starting",
    };
    let done = status.steps.iter().filter(|s| s.state == StepState::Done).count();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                noscript { meta http-equiv="refresh" content=(RETRY_SECS * 2); }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                main {
                    h1 { (title) }
                    @if let Some(problem) = &status.problem {
                        p.problem role="alert" { (problem.message) }
                    } @else {
                        p role="status" {
                            (done) " of " (status.steps.len()) " steps done. "
                            "This page follows the start and shows the "
                            @if status.setup_complete { "cell" } @else { "setup" }
                            " by itself when the cell is ready."
                        }
                    }
                    ol aria-label="Steps" {
                        @for step in &status.steps {
                            li {
                                @let (class, word) = match step.state {
                                    StepState::Pending => ("pending", "Waiting"),
                                    StepState::Active => ("active", "Under way"),
                                    StepState::Done => ("done", "Done"),
                                    StepState::Failed => ("failed", "Failed"),
                                };
                                span class={ "state " (class) } { (word) } " "
                                strong { (step.title) }
                                // The problem is said once, above the steps.
                                @if !step.detail.is_empty() && status.problem.as_ref().is_none_or(|p| p.message != step.detail) {
                                    ": " (step.detail)
                                }
                                @if let Some(progress) = step.progress {
                                    " "
                                    progress max=(progress.total) value=(progress.done)
                                        aria-label={ (step.title) ", " (progress.done) " of " (progress.total) } {}
                                }
                            }
                        }
                    }
                    @if let Some(message) = &status.network.message { p.problem { (message) } }
                }
                script { (maud::PreEscaped(script())) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::moments;
    use super::*;

    #[test]
    fn the_page_at_each_moment() {
        for (what, seen) in moments() {
            let page = html(&Status::from(&seen)).into_string();
            insta::assert_snapshot!(what.replace([' ', ','], "_"), page);
        }
    }

    #[test]
    fn text_is_escaped() {
        let (_, small) = moments().into_iter().find(|(what, _)| what.starts_with("a disk too small")).unwrap();
        let mut status = Status::from(&small);
        status.problem.as_mut().unwrap().message = "<script>alert(1)</script>".into();
        let page = html(&status).into_string();
        assert!(page.contains("&lt;script&gt;alert(1)"), "{page}");
    }
}
