"""Functions where values leave or enter a process, or change form: writes, reads, transforms.

They are library functions (Go's os and encoding/json, bbolt, grpc, ttrpc, protobuf,
typeurl), not containerd's, so refinement never probes them as suspects; it adds them
when they are reachable from the code that holds a value in a process that lost it,
and localization reads them as outputs of the containerd function that called them:
- write: the value leaves through it (a file, a bolt bucket, an RPC request). A write
  that holds V passes V on; a holder whose own writes all lack V wrote without it.
- read: the value comes in through it (a file's content).
- transform: the value changes form through it (marshal, unmarshal): it goes in and,
  unless the transform lost it, comes back out.
"""

from __future__ import annotations

IO_FUNCTIONS: dict[str, str] = {
    "os.WriteFile": "write",
    "os.(*File).Write": "write",
    "os.(*File).WriteString": "write",
    "go.etcd.io/bbolt.(*Bucket).Put": "write",
    "github.com/containerd/ttrpc.(*Client).Call": "write",
    "google.golang.org/grpc.(*ClientConn).Invoke": "write",
    "google.golang.org/grpc.(*clientStream).SendMsg": "write",
    "google.golang.org/grpc.(*serverStream).SendMsg": "write",
    "os.ReadFile": "read",
    "os.(*File).Read": "read",
    "encoding/json.Marshal": "transform",
    "encoding/json.MarshalIndent": "transform",
    "encoding/json.Unmarshal": "transform",
    "encoding/json.(*Decoder).Decode": "transform",
    "encoding/json.(*Encoder).Encode": "transform",
    "google.golang.org/protobuf/proto.Marshal": "transform",
    "google.golang.org/protobuf/proto.Unmarshal": "transform",
    "github.com/containerd/typeurl/v2.MarshalAny": "transform",
    "github.com/containerd/typeurl/v2.UnmarshalAny": "transform",
    "github.com/containerd/typeurl.MarshalAny": "transform",
    "github.com/containerd/typeurl.UnmarshalAny": "transform",
}


def io_role(function: str) -> str | None:
    """write | read | transform, or None for any other function."""
    return IO_FUNCTIONS.get(function)
