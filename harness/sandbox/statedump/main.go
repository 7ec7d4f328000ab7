// statedump reads what a containerd daemon has recorded, through its own gRPC
// API, and prints it as JSON. annotrace uses it to read the image record, the
// container record and content blobs of any containerd version (v1.6 to v2.x
// speak the same v1 services), without depending on what a given ctr prints.
//
//	statedump --address SOCK --namespace NS images
//	statedump --address SOCK --namespace NS container ID
//	statedump --address SOCK --namespace NS content DIGEST
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type imageRecord struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Target descriptor        `json:"target"`
}

type containerRecord struct {
	ID          string            `json:"id"`
	Image       string            `json:"image"`
	Labels      map[string]string `json:"labels,omitempty"`
	Runtime     string            `json:"runtime"`
	SpecTypeURL string            `json:"spec_type_url"`
	Spec        json.RawMessage   `json:"spec"`
}

func main() {
	address := flag.String("address", "", "containerd socket")
	namespace := flag.String("namespace", "default", "containerd namespace")
	flag.Parse()
	if *address == "" || flag.NArg() < 1 {
		fail("usage: statedump --address SOCK [--namespace NS] images|container ID|content DIGEST")
	}
	conn, err := grpc.NewClient("unix://"+*address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail("connect: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-namespace", *namespace)

	switch flag.Arg(0) {
	case "images":
		dumpImages(ctx, conn)
	case "container":
		dumpContainer(ctx, conn, flag.Arg(1))
	case "content":
		dumpContent(ctx, conn, flag.Arg(1))
	default:
		fail("unknown command %q", flag.Arg(0))
	}
}

func dumpImages(ctx context.Context, conn *grpc.ClientConn) {
	resp, err := imagesapi.NewImagesClient(conn).List(ctx, &imagesapi.ListImagesRequest{})
	if err != nil {
		fail("list images: %v", err)
	}
	records := []imageRecord{}
	for _, img := range resp.Images {
		records = append(records, imageRecord{
			Name:   img.Name,
			Labels: img.Labels,
			Target: descriptor{
				MediaType:   img.Target.MediaType,
				Digest:      img.Target.Digest,
				Size:        img.Target.Size,
				Annotations: img.Target.Annotations,
			},
		})
	}
	emit(records)
}

func dumpContainer(ctx context.Context, conn *grpc.ClientConn, id string) {
	resp, err := containersapi.NewContainersClient(conn).Get(ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		fail("get container %s: %v", id, err)
	}
	c := resp.Container
	record := containerRecord{ID: c.ID, Image: c.Image, Labels: c.Labels, Spec: json.RawMessage("null")}
	if c.Runtime != nil {
		record.Runtime = c.Runtime.Name
	}
	if c.Spec != nil {
		record.SpecTypeURL = c.Spec.TypeUrl
		// The spec travels as the JSON of the OCI runtime spec.
		if json.Valid(c.Spec.Value) {
			record.Spec = json.RawMessage(c.Spec.Value)
		}
	}
	emit(record)
}

func dumpContent(ctx context.Context, conn *grpc.ClientConn, digest string) {
	stream, err := contentapi.NewContentClient(conn).Read(ctx, &contentapi.ReadContentRequest{Digest: digest})
	if err != nil {
		fail("read %s: %v", digest, err)
	}
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return
		}
		if err != nil {
			fail("read %s: %v", digest, err)
		}
		os.Stdout.Write(chunk.Data)
	}
}

func emit(v any) {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fail("encode: %v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "statedump: "+format+"\n", args...)
	os.Exit(1)
}
