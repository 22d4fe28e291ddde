// The go-control-plane peer of chikai's xds bench: an ADS server built on
// go-control-plane's snapshot cache, serving the resources chikai's builder made (read as
// Envoy JSON with protojson) to the same simulated gateways, one snapshot per gateway view
// (the view is the node's locality.sub_zone, as in chikai).
//
// Driven by the bench over stdin/stdout, one JSON object per line:
//
//	<- {"cmd":"load","dir":D}     D/ready/<view>.json and D/unready/<view>.json
//	-> {"ok":true}                snapshots of the "ready" state set, EDS version "eds-0"
//	<- {"cmd":"change","seq":K}   change K: the "unready" state for even K, "ready" for odd
//	-> {"ok":true}                new EDS version "eds-<K+1>"; CDS, LDS, RDS keep theirs
//
// It prints {"port":P} once it listens. Only EDS changes between the states, so each change
// moves only the EDS version, the best use of the cache: no CDS, LDS or RDS is re-sent.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The typed_config messages chikai's resources pack into Anys must be linked in for protojson.
var _ = []proto.Message{&routerv3.Router{}, &hcmv3.HttpConnectionManager{}, &httpv3.HttpProtocolOptions{}}

const neutralView = "(neutral)"

// viewHash keys snapshots by the gateway's node, like chikai's views.
type viewHash struct{}

func (viewHash) ID(node *corev3.Node) string {
	if z := node.GetLocality().GetSubZone(); z != "" {
		return z
	}
	return neutralView
}

type viewFile struct {
	Clusters  []json.RawMessage `json:"clusters"`
	Endpoints []json.RawMessage `json:"endpoints"`
	Listeners []json.RawMessage `json:"listeners"`
	Routes    []json.RawMessage `json:"routes"`
}

type view struct {
	clusters, listeners, routes []types.Resource
	endpoints                   map[string][]types.Resource // by state
}

func decode[T proto.Message](file string, raws []json.RawMessage, fresh func() T) ([]types.Resource, error) {
	out := make([]types.Resource, 0, len(raws))
	for i, raw := range raws {
		m := fresh()
		if err := protojson.Unmarshal(raw, m); err != nil {
			return nil, fmt.Errorf("%s: resource %d: %w", file, i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func readView(file string) (*viewFile, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var v viewFile
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &v, nil
}

func load(dir string) (map[string]*view, error) {
	views := map[string]*view{}
	for _, state := range []string{"ready", "unready"} {
		files, err := filepath.Glob(filepath.Join(dir, state, "*.json"))
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("no view files in %s", filepath.Join(dir, state))
		}
		for _, file := range files {
			key := strings.TrimSuffix(filepath.Base(file), ".json")
			f, err := readView(file)
			if err != nil {
				return nil, err
			}
			v := views[key]
			if v == nil {
				v = &view{endpoints: map[string][]types.Resource{}}
				if v.clusters, err = decode(file, f.Clusters, func() *clusterv3.Cluster { return &clusterv3.Cluster{} }); err != nil {
					return nil, err
				}
				if v.listeners, err = decode(file, f.Listeners, func() *listenerv3.Listener { return &listenerv3.Listener{} }); err != nil {
					return nil, err
				}
				if v.routes, err = decode(file, f.Routes, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} }); err != nil {
					return nil, err
				}
				views[key] = v
			}
			if v.endpoints[state], err = decode(file, f.Endpoints, func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} }); err != nil {
				return nil, err
			}
		}
	}
	return views, nil
}

// snapshot of a view in a state, with per-type versions: only EDS moves between changes.
func snapshot(v *view, state, edsVersion string) (*cachev3.Snapshot, error) {
	s := &cachev3.Snapshot{}
	s.Resources[types.Cluster] = cachev3.NewResources("1", v.clusters)
	s.Resources[types.Endpoint] = cachev3.NewResources(edsVersion, v.endpoints[state])
	s.Resources[types.Listener] = cachev3.NewResources("1", v.listeners)
	s.Resources[types.Route] = cachev3.NewResources("1", v.routes)
	if err := s.Consistent(); err != nil {
		return nil, err
	}
	return s, nil
}

func main() {
	ctx := context.Background()
	cache := cachev3.NewSnapshotCache(true, viewHash{}, nil)
	srv := serverv3.NewServer(ctx, cache, nil)
	grpcServer := grpc.NewServer(grpc.MaxConcurrentStreams(1 << 20))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(grpcServer, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-control-plane peer:", err)
		os.Exit(1)
	}
	go func() { _ = grpcServer.Serve(lis) }()

	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(map[string]int{"port": lis.Addr().(*net.TCPAddr).Port})
	var views map[string]*view
	set := func(state, edsVersion string) error {
		for key, v := range views {
			s, err := snapshot(v, state, edsVersion)
			if err != nil {
				return fmt.Errorf("view %s: %w", key, err)
			}
			if err := cache.SetSnapshot(ctx, key, s); err != nil {
				return fmt.Errorf("view %s: %w", key, err)
			}
		}
		return nil
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var cmd struct {
			Cmd string `json:"cmd"`
			Dir string `json:"dir"`
			Seq int    `json:"seq"`
		}
		err := json.Unmarshal(in.Bytes(), &cmd)
		if err == nil {
			switch cmd.Cmd {
			case "load":
				if views, err = load(cmd.Dir); err == nil {
					err = set("ready", "eds-0")
				}
			case "change":
				state := "unready"
				if cmd.Seq%2 == 1 {
					state = "ready"
				}
				err = set(state, fmt.Sprintf("eds-%d", cmd.Seq+1))
			default:
				err = fmt.Errorf("unknown command %q (load, change)", cmd.Cmd)
			}
		}
		if err != nil {
			_ = out.Encode(map[string]string{"error": err.Error()})
		} else {
			_ = out.Encode(map[string]bool{"ok": true})
		}
	}
	grpcServer.Stop()
}
