//! The demo API's orders: ten seeded at start, kept in memory (a restart of the
//! process starts over), and the handlers of `/orders`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{DemoApi, Problem};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub customer: String,
    pub email: String,
    pub amount: f64,
    pub status: String,
    /// What has been refunded so far.
    #[serde(default)]
    pub refunded: f64,
}

/// The fields a client may write (`POST`, `PUT`: all but `status` required; `PATCH`:
/// any of them). Unknown fields are refused so a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderFields {
    customer: Option<String>,
    email: Option<String>,
    amount: Option<f64>,
    status: Option<String>,
}

pub struct Orders {
    /// std, not tokio: every critical section is a map operation, no await inside.
    state: Mutex<Book>,
}

struct Book {
    by_id: BTreeMap<u64, Order>,
    next_id: u64,
}

impl Orders {
    pub fn seeded() -> Self {
        let seed: [(&str, &str, f64, &str); 10] = [
            ("Ada Lovelace", "ada@example.com", 120.0, "paid"),
            ("Grace Hopper", "grace@example.com", 89.5, "shipped"),
            ("Alan Turing", "alan@example.org", 1500.0, "paid"),
            ("Katherine Johnson", "katherine@example.net", 42.0, "pending"),
            ("Edsger Dijkstra", "edsger@example.com", 310.25, "paid"),
            ("Barbara Liskov", "barbara@example.org", 2750.0, "shipped"),
            ("Donald Knuth", "don@example.com", 64.0, "pending"),
            ("Margaret Hamilton", "margaret@example.com", 999.99, "paid"),
            ("Ken Thompson", "ken@example.net", 15.0, "cancelled"),
            ("Frances Allen", "frances@example.org", 430.0, "paid"),
        ];
        let by_id = seed
            .iter()
            .zip(1u64..)
            .map(|((customer, email, amount, status), id)| {
                let order = Order {
                    id,
                    customer: (*customer).into(),
                    email: (*email).into(),
                    amount: *amount,
                    status: (*status).into(),
                    refunded: 0.0,
                };
                (id, order)
            })
            .collect();
        Orders { state: Mutex::new(Book { by_id, next_id: 11 }) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Book) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    pub fn all(&self) -> Vec<Order> {
        self.with(|s| s.by_id.values().cloned().collect())
    }
}

fn no_such_order(id: u64) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, format!("no order {id}"))
}

/// The body as JSON whatever its content type (curl -d sends a form type).
fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Problem> {
    serde_json::from_slice(body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("body: not the JSON expected: {e}")))
}

fn required<T>(field: Option<T>, name: &str) -> Result<T, Problem> {
    field.ok_or_else(|| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("field {name} is required")))
}

fn check_amount(amount: f64) -> Result<f64, Problem> {
    if amount.is_finite() && amount >= 0.0 {
        Ok(amount)
    } else {
        Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "amount must be a number >= 0"))
    }
}

pub async fn list(State(api): State<DemoApi>) -> axum::Json<Vec<Order>> {
    axum::Json(api.orders().all())
}

pub async fn show(State(api): State<DemoApi>, Path(id): Path<u64>) -> Response {
    match api.orders().with(|s| s.by_id.get(&id).cloned()) {
        Some(order) => axum::Json(order).into_response(),
        None => no_such_order(id).into_response(),
    }
}

pub async fn create(State(api): State<DemoApi>, body: Bytes) -> Result<Response, Problem> {
    let fields: OrderFields = json_body(&body)?;
    let customer = required(fields.customer, "customer")?;
    let email = required(fields.email, "email")?;
    let amount = check_amount(required(fields.amount, "amount")?)?;
    let status = fields.status.unwrap_or_else(|| "pending".into());
    let order = api.orders().with(|s| {
        let id = s.next_id;
        s.next_id += 1;
        let order = Order { id, customer, email, amount, status, refunded: 0.0 };
        s.by_id.insert(id, order.clone());
        order
    });
    Ok((StatusCode::CREATED, axum::Json(order)).into_response())
}

pub async fn replace(State(api): State<DemoApi>, Path(id): Path<u64>, body: Bytes) -> Result<Response, Problem> {
    let fields: OrderFields = json_body(&body)?;
    let customer = required(fields.customer, "customer")?;
    let email = required(fields.email, "email")?;
    let amount = check_amount(required(fields.amount, "amount")?)?;
    let status = fields.status.unwrap_or_else(|| "pending".into());
    api.orders()
        .with(|s| {
            let order = s.by_id.get_mut(&id)?;
            *order = Order { id, customer, email, amount, status, refunded: order.refunded };
            Some(order.clone())
        })
        .map(|o| axum::Json(o).into_response())
        .ok_or_else(|| no_such_order(id))
}

pub async fn update(State(api): State<DemoApi>, Path(id): Path<u64>, body: Bytes) -> Result<Response, Problem> {
    let fields: OrderFields = json_body(&body)?;
    let amount = fields.amount.map(check_amount).transpose()?;
    api.orders()
        .with(|s| {
            let order = s.by_id.get_mut(&id)?;
            if let Some(v) = fields.customer {
                order.customer = v;
            }
            if let Some(v) = fields.email {
                order.email = v;
            }
            if let Some(v) = amount {
                order.amount = v;
            }
            if let Some(v) = fields.status {
                order.status = v;
            }
            Some(order.clone())
        })
        .map(|o| axum::Json(o).into_response())
        .ok_or_else(|| no_such_order(id))
}

pub async fn remove(State(api): State<DemoApi>, Path(id): Path<u64>) -> Response {
    match api.orders().with(|s| s.by_id.remove(&id)) {
        Some(order) => axum::Json(json!({"deleted": order.id})).into_response(),
        None => no_such_order(id).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Refund {
    amount: f64,
    #[serde(default)]
    reason: Option<String>,
}

/// Refund part or all of an order: at most what is left of its amount.
pub async fn refund(State(api): State<DemoApi>, Path(id): Path<u64>, body: Bytes) -> Result<Response, Problem> {
    let refund: Refund = json_body(&body)?;
    let amount = check_amount(refund.amount)?;
    if amount == 0.0 {
        return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "a refund needs an amount > 0"));
    }
    let result = api.orders().with(|s| {
        let order = s.by_id.get_mut(&id).ok_or(None)?;
        let left = order.amount - order.refunded;
        if amount > left + 1e-9 {
            return Err(Some(left));
        }
        order.refunded += amount;
        order.status =
            if order.refunded + 1e-9 >= order.amount { "refunded".into() } else { "partially_refunded".into() };
        Ok(order.clone())
    });
    match result {
        Ok(order) => {
            Ok(axum::Json(json!({"order": order, "refund": {"amount": amount, "reason": refund.reason}}))
                .into_response())
        }
        Err(None) => Err(no_such_order(id)),
        Err(Some(left)) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("order {id} has {left} left to refund, not {amount}"),
        )),
    }
}

/// For the event stream: one order's id and email, round robin.
pub fn pick(api: &DemoApi, seq: u64) -> Value {
    let orders = api.orders().all();
    let len = orders.len().max(1) as u64;
    match orders.get(usize::try_from(seq % len).unwrap_or(0)) {
        Some(o) => json!({"order_id": o.id, "email": o.email}),
        None => json!({}),
    }
}
