//! The overview as HTML, drawn by the server: readable without JavaScript
//! and on a phone. Every value from outside (account names, addresses,
//! reasons) is escaped.

use std::fmt::Write;

use super::status::Status;
use crate::store::traffic::Minute;
use crate::store::MessageLife;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A duration in seconds as people read it: 42 s, 7 min, 3 h 5 min, 2 d 4 h.
pub fn age(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", seconds / 60),
        3600..=86_399 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1rem;max-width:70rem}\
table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}\
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}\
.ok{color:#1a7f37}.warn{color:#b35900}.bad{color:#c62828}\
small{color:#555}@media(max-width:40rem){td,th{display:block;border:0}tr{display:block;\
border-bottom:1px solid #ddd;margin-bottom:.5rem}}";

/// The overview page; it refreshes itself every `refresh_s` seconds.
pub fn overview(status: &Status, csrf: &str, refresh_s: u32) -> String {
    let mut html = String::new();
    let node = &status.node;
    let health_class = if node.health == "ok" { "ok" } else { "bad" };
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{refresh_s}\">\
         <title>smpp-broker</title><style>{STYLE}</style></head><body>\
         <h1>smpp-broker <small>{}</small></h1>\
         <p id=\"node\">Store: {} · health: <span class=\"{health_class}\">{}</span> · \
         up {}",
        escape(node.version),
        escape(&node.store),
        escape(&node.health),
        age(node.uptime_s),
    );
    if let Some(node_id) = &node.node_id {
        let _ = write!(
            html,
            " · node <b>{}</b>, leases: {}",
            escape(node_id),
            escape(&node.leases.join(", "))
        );
    }
    html.push_str("</p>");
    html.push_str(SEARCH_FORM);
    html.push_str("<h2>Traffic, last hour</h2>");
    html.push_str(&chart(&status.traffic));
    html.push_str(
        "<h2>Accounts</h2><table id=\"accounts\"><tr><th>Account</th>\
        <th>Sessions</th><th>Submits/s<br><small>1 min · 15 min</small></th>\
        <th>Waiting to send</th><th>Receipts and incoming waiting</th>\
        <th>Messages by state</th><th>Refused</th></tr>",
    );
    for account in &status.accounts {
        let sessions = if account.sessions.is_empty() {
            "<small>none bound</small>".to_owned()
        } else {
            account
                .sessions
                .iter()
                .map(|s| {
                    format!(
                        "{} from {} <small>for {}</small> {}",
                        escape(s.bind_type),
                        escape(&s.peer),
                        age(s.bound_for_s),
                        button(
                            &format!("/api/sessions/{}/disconnect", s.session_id),
                            "Disconnect",
                            csrf
                        )
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let deliveries = match account.oldest_delivery_s {
            Some(oldest) => format!(
                "{} <small>oldest {}</small>",
                account.deliveries_waiting,
                age(oldest)
            ),
            None => "0".to_owned(),
        };
        let states = account
            .by_state
            .iter()
            .map(|(state, n)| format!("{} {n}", escape(state)))
            .collect::<Vec<_>>()
            .join(", ");
        let refused = account
            .submits
            .refusals
            .iter()
            .map(|(status, n)| format!("{} {n}", escape(status)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            html,
            "<tr><td><b>{}</b></td><td>{sessions}</td><td>{:.1} · {:.1}</td><td>{}</td>\
             <td>{deliveries}</td><td><small>{}</small></td><td><small>{}</small></td></tr>",
            escape(&account.system_id),
            account.submits.per_second_1m,
            account.submits.per_second_15m,
            account.waiting,
            states,
            refused,
        );
    }
    html.push_str(
        "</table><h2>Upstreams</h2><table id=\"upstreams\"><tr><th>Upstream</th>\
        <th>State</th><th>In flight</th><th>Last error</th><th>Limits used</th><th></th></tr>",
    );
    for upstream in &status.upstreams {
        let class = match upstream.state {
            "sending" => "ok",
            "paused" | "over_limit" => "bad",
            _ => "warn",
        };
        let reason = upstream
            .reason
            .as_deref()
            .map(|r| format!("<br><small>{}</small>", escape(r)))
            .unwrap_or_default();
        let (action, label) = if upstream.state == "hold" {
            ("release", "Release")
        } else {
            ("hold", "Hold")
        };
        let toggle = button(
            &format!("/api/upstreams/{}/{action}", escape(&upstream.name)),
            label,
            csrf,
        );
        let since = |at: i64| age(((node.now_ms - at).max(0) / 1000) as u64);
        let last_error = match (&upstream.last_error, upstream.last_error_at_ms) {
            (Some(what), Some(at)) => {
                format!("{} <small>{} ago</small>", escape(what), since(at))
            }
            _ => "<small>none</small>".to_owned(),
        };
        let limits = upstream
            .limits
            .iter()
            .map(|l| format!("{} {} of {}", l.period, l.used, l.limit))
            .collect::<Vec<_>>()
            .join("<br>");
        let taken = upstream
            .last_taken_at_ms
            .map(|at| format!("<br><small>last took one {} ago</small>", since(at)))
            .unwrap_or_default();
        let _ = write!(
            html,
            "<tr><td><b>{}</b><br><small>{}/s, {} at once</small></td>\
             <td><span class=\"{class}\">{}</span>{reason}</td>\
             <td>{}{taken}</td><td>{last_error}</td><td>{limits}</td><td>{toggle}</td></tr>",
            escape(&upstream.name),
            upstream.rate,
            upstream.max_in_flight,
            escape(upstream.state),
            upstream.in_flight,
        );
    }
    html.push_str("</table>");
    html.push_str(&configuration(status, csrf));
    html.push_str(
        "<p><small>JSON: <a href=\"/api/status\">/api/status</a></small></p></body></html>",
    );
    html
}

/// The last reload's outcome and the button that reads the file again.
fn configuration(status: &Status, csrf: &str) -> String {
    let last = match &status.last_reload {
        None => "<small>not reloaded since startup</small>".to_owned(),
        Some(last) => {
            let ago = age(((status.node.now_ms - last.at_ms).max(0) / 1000) as u64);
            match (&last.changes, &last.error) {
                (_, Some(error)) => format!(
                    "<span class=\"bad\">refused</span> {ago} ago ({}): {}",
                    escape(&last.by),
                    escape(error)
                ),
                (Some(changes), None) => format!(
                    "<span class=\"ok\">applied</span> {ago} ago ({}): accounts added {}, \
                     removed {}, changed {}; {} sessions unbound{}{}",
                    escape(&last.by),
                    escape(&changes.accounts_added.join(", ")),
                    escape(&changes.accounts_removed.join(", ")),
                    escape(&changes.accounts_changed.join(", ")),
                    changes.sessions_unbound,
                    if changes.dispatch_restarted {
                        "; upstreams and routes restarted"
                    } else {
                        ""
                    },
                    if changes.restart_needed.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; <span class=\"warn\">needs a restart: {}</span>",
                            escape(&changes.restart_needed.join(", "))
                        )
                    },
                ),
                (None, None) => String::new(),
            }
        }
    };
    format!(
        "<h2>Configuration</h2><p id=\"reload\">Last reload: {last} {}</p>",
        button("/api/reload", "Reload the file", csrf)
    )
}

/// The form that finds a message by its id or its destination.
const SEARCH_FORM: &str = "<form method=\"get\" action=\"/messages\">\
    <input name=\"q\" placeholder=\"message_id or destination number\" size=\"28\"> \
    <button type=\"submit\">Find</button></form>";

/// A time as UTC, to the second: 2026-12-07 15:04:05 UTC.
fn when(ms: i64) -> String {
    crate::time::format_rfc3339(ms)
        .replace('T', " ")
        .replace('Z', " UTC")
}

/// The messages found for `query`, each with what the database keeps of it.
pub fn messages(query: &str, found: &[MessageLife], now_ms: i64) -> String {
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>smpp-broker: {q}</title><style>{STYLE}</style></head><body>\
         <p><a href=\"/\">← overview</a></p>{SEARCH_FORM}<h1>Messages for {q}</h1>",
        q = escape(query)
    );
    if found.is_empty() {
        html.push_str("<p id=\"none\">No message with that id or to that number.</p>");
    }
    for m in found {
        let session = match (m.session, &m.session_bind_type, &m.session_peer) {
            (Some(n), Some(kind), Some(peer)) => format!(
                ", session {n} ({} from {}, bound {})",
                escape(kind),
                escape(peer),
                m.session_bound_at.map(when).unwrap_or_default()
            ),
            (Some(n), _, _) => format!(", session {n}"),
            _ => String::new(),
        };
        let mut life = vec![format!(
            "accepted {} from account <b>{}</b>{session} ({} → {}), route {}",
            when(m.submitted_at),
            escape(&m.system_id),
            escape(&m.source_addr),
            escape(&m.dest_addr),
            escape(&m.route)
        )];
        if let (Some(seq), Some(total)) = (m.concat_seq, m.concat_total) {
            life.push(format!("part {seq} of {total} of a long message"));
        }
        if let Some(at) = m.scheduled_at {
            life.push(format!("scheduled for {}", when(at)));
        }
        match (&m.upstream, &m.upstream_id) {
            (Some(upstream), Some(id)) => life.push(format!(
                "{} <b>handed to {}</b> as {} after {} attempt(s); its state there now: {}",
                m.sent_at.map(when).unwrap_or_default(),
                escape(upstream),
                escape(id),
                m.attempts.unwrap_or(0),
                escape(m.upstream_state.as_deref().unwrap_or("-"))
            )),
            (Some(upstream), None) => life.push(format!("bound to <b>{}</b>", escape(upstream))),
            _ => {}
        }
        life.extend(m.events.iter().map(|e| {
            format!(
                "{} <b>{}</b> {}",
                when(e.at),
                escape(event_name(&e.event)),
                escape(&e.detail)
            )
        }));
        if let Some(error) = &m.last_error {
            life.push(format!("last error: {}", escape(error)));
        }
        match m.final_at {
            Some(at) => life.push(format!(
                "final <b>{}</b> at {} (error code {})",
                escape(&m.state),
                when(at),
                m.error_code
            )),
            None => life.push(format!(
                "now <b>{}</b>; valid for {} more",
                escape(&m.state),
                age(((m.expires_at - now_ms).max(0) / 1000) as u64)
            )),
        }
        if m.receipts_waiting > 0 {
            life.push(format!(
                "{} <b>{} receipt(s) stored</b>, waiting for the ESME's deliver_sm_resp",
                m.receipts_waiting_since.map(when).unwrap_or_default(),
                m.receipts_waiting,
            ));
        }
        let _ = write!(
            html,
            "<h2 class=\"message\">{}</h2><ul><li>{}</li></ul>",
            m.message_id,
            life.join("</li><li>")
        );
    }
    html.push_str("</body></html>");
    html
}

/// A step of a message's life as a person reads it.
fn event_name(event: &str) -> &str {
    match event {
        "retry" => "attempt failed, to be retried:",
        "failed" => "failed:",
        "upstream" => "upstream state",
        "receipt_delivered" => "receipt delivered,",
        "receipt_refused" => "receipt not taken:",
        other => other,
    }
}

/// A series of the chart: its name, its colour, and the count it reads.
type Series = (&'static str, &'static str, fn(&Minute) -> u64);

const SERIES: [Series; 4] = [
    ("submitted", "#1f6feb", |m| m.submitted),
    ("sent", "#8250df", |m| m.sent),
    ("delivered", "#1a7f37", |m| m.delivered),
    ("failed", "#c62828", |m| m.failed),
];

/// Messages per minute as lines over the hour, drawn as SVG by the server.
fn chart(minutes: &[Minute]) -> String {
    const WIDTH: usize = 600;
    const HEIGHT: usize = 120;
    let top = minutes
        .iter()
        .flat_map(|m| SERIES.iter().map(move |(_, _, count)| count(m)))
        .max()
        .unwrap_or(0)
        .max(1);
    let step = WIDTH as f64 / minutes.len().saturating_sub(1).max(1) as f64;
    let mut svg = format!(
        "<svg id=\"traffic\" viewBox=\"0 0 {WIDTH} {}\" width=\"100%\" \
         style=\"max-width:40rem\" role=\"img\" \
         aria-label=\"messages per minute over the last hour\">\
         <line x1=\"0\" y1=\"{HEIGHT}\" x2=\"{WIDTH}\" y2=\"{HEIGHT}\" stroke=\"#999\"/>\
         <text x=\"2\" y=\"12\" font-size=\"11\">{top}/min</text>",
        HEIGHT + 16
    );
    for (index, (name, colour, count)) in SERIES.iter().enumerate() {
        let points: Vec<String> = minutes
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let y = HEIGHT as f64 - count(m) as f64 / top as f64 * (HEIGHT - 16) as f64;
                format!("{:.1},{:.1}", i as f64 * step, y)
            })
            .collect();
        let total: u64 = minutes.iter().map(count).sum();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{colour}\">{name} {total}</text>",
            points.join(" "),
            60 + index * 130,
            HEIGHT + 14,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A one-button form that POSTs to `action` with the console's token.
fn button(action: &str, label: &str, csrf: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{action}\" style=\"display:inline\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">{label}</button></form>",
        escape(csrf)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_outside_cannot_become_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(42), "42 s");
        assert_eq!(age(7 * 60 + 5), "7 min");
        assert_eq!(age(3 * 3600 + 5 * 60), "3 h 5 min");
        assert_eq!(age(2 * 86_400 + 4 * 3600), "2 d 4 h");
    }
}
