//! How a protobuf message of k8s.io/api maps to its JSON form: per message, each
//! field's number, JSON name, value kind and shape. The tables themselves live in
//! `types/`, one file per API group version; a new kind is a new row in `KINDS`
//! (in `mod.rs`) plus the messages it reaches.
//!
//! Go's JSON encoding decides what the client would have sent as JSON, so the
//! tables also carry Go's `omitempty`: gogo-protobuf writes every non-pointer scalar
//! even when it is zero (`namespace: ""`, `generation: 0`), while JSON leaves a zero
//! out when the field is `omitempty`. Pointer fields (`replicas *int32`) are only on
//! the wire when set, so a zero there is kept: it is a real value.

/// What one field holds (one element of it, for repeated fields and maps).
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `string`: a JSON string.
    Str,
    /// `int32`: a JSON number.
    I32,
    /// `int64`: a JSON number.
    I64,
    /// `bool`.
    Bool,
    /// `bytes`: a base64 JSON string (like Go's `[]byte`).
    Bytes,
    /// An embedded message: a JSON object.
    Msg(&'static Message),
    /// `metav1.Time` {seconds = 1, nanos = 2}: RFC 3339 at second precision; an
    /// empty message is the zero time, JSON `null`.
    Time,
    /// `metav1.MicroTime`: like `Time`, with microseconds.
    MicroTime,
    /// `metav1.Duration` {duration = 1 (nanoseconds)}: Go's duration string ("1m30s").
    /// (No kind in the tables has one yet; the API groups that do are not served.)
    #[allow(dead_code)]
    Duration,
    /// `resource.Quantity` {string = 1}: the quantity's string.
    Quantity,
    /// `intstr.IntOrString` {type = 1, intVal = 2, strVal = 3}: a number or a string.
    IntOrString,
    /// `runtime.RawExtension` {raw = 1}: embedded JSON (or an embedded `k8s\0` object).
    Raw,
    /// `metav1.FieldsV1` {Raw = 1}: embedded JSON.
    FieldsV1,
}

impl Kind {
    /// Whether values of this kind are varints on the wire (and so may come packed
    /// when repeated).
    pub fn is_varint(self) -> bool {
        matches!(self, Kind::I32 | Kind::I64 | Kind::Bool)
    }
}

/// How a field's values make up its JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One value (`optional`); the last one on the wire wins, messages merge.
    One,
    /// `repeated`: a JSON array.
    Repeated,
    /// `map<string, Kind>`: repeated {key = 1, value = 2} entries, a JSON object.
    Map,
    /// A Go embedded struct (`json:",inline"`): a message whose fields become the
    /// parent object's own (`Volume.volumeSource`, `Probe.handler`).
    Inline,
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub number: u32,
    /// The JSON name (unused for inline fields).
    pub name: &'static str,
    pub kind: Kind,
    pub shape: Shape,
    /// A non-pointer Go scalar with `omitempty`: its zero value means "absent".
    pub omit_empty: bool,
}

/// A singular field that keeps zero values (a Go pointer, or no `omitempty`).
pub const fn f(number: u32, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        shape: Shape::One,
        omit_empty: false,
    }
}

/// An embedded message whose fields are inlined into the parent's JSON object.
pub const fn inline(number: u32, message: &'static Message) -> Field {
    Field {
        number,
        name: "",
        kind: Kind::Msg(message),
        shape: Shape::Inline,
        omit_empty: false,
    }
}

impl Field {
    pub const fn omitempty(mut self) -> Field {
        self.omit_empty = true;
        self
    }

    pub const fn repeated(mut self) -> Field {
        self.shape = Shape::Repeated;
        self
    }

    pub const fn map(mut self) -> Field {
        self.shape = Shape::Map;
        self
    }
}

/// One protobuf message type, fields sorted by number.
#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

impl Message {
    pub const fn new(name: &'static str, fields: &'static [Field]) -> Message {
        Message { name, fields }
    }

    pub fn field(&self, number: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&number, |f| f.number)
            .ok()
            .map(|i| &self.fields[i])
    }
}
