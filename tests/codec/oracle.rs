//! Expectations written out by hand, independently of the codec, shared by the
//! round-trip and mutation tests.

use smpp_broker::smpp::pdu::{
    BindResp, Body, DataSmResp, MessageIdResp, QuerySmResp, SubmitMultiResp,
};

/// The body a header-only response of this body's kind decodes to.
pub fn empty_body(body: &Body) -> Body {
    match body {
        Body::BindResp(kind, _) => Body::BindResp(*kind, BindResp::default()),
        Body::SubmitSmResp(_) => Body::SubmitSmResp(MessageIdResp::default()),
        Body::DeliverSmResp(_) => Body::DeliverSmResp(MessageIdResp::default()),
        Body::SubmitMultiResp(_) => Body::SubmitMultiResp(SubmitMultiResp::default()),
        Body::DataSmResp(_) => Body::DataSmResp(DataSmResp::default()),
        Body::QuerySmResp(_) => Body::QuerySmResp(QuerySmResp::default()),
        other => other.clone(),
    }
}
