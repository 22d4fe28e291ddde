package main

// testCase is one KIngress as the Kubernetes API sends it (JSON), with what it covers.
type testCase struct {
	name        string
	description string
	object      string
}

var cases = []testCase{
	{
		name:        "knative-service",
		description: "what Knative's route controller writes for a Knative Service: a cluster-local and an external rule, one split at 100 % with the Knative-Serving-* headers, plus metadata and status the hash leaves out",
		object: `{
  "apiVersion": "networking.internal.knative.dev/v1alpha1",
  "kind": "Ingress",
  "metadata": {
    "name": "hello",
    "namespace": "default",
    "generation": 1,
    "resourceVersion": "4711",
    "uid": "0b9d4e9c-6f1e-4a35-9d36-2f5ab1a0e6d1",
    "creationTimestamp": "2026-01-20T10:00:00Z",
    "annotations": {
      "networking.knative.dev/ingress.class": "kourier.ingress.networking.knative.dev",
      "serving.knative.dev/creator": "admin",
      "serving.knative.dev/lastModifier": "admin"
    },
    "labels": {
      "serving.knative.dev/route": "hello",
      "serving.knative.dev/routeNamespace": "default",
      "serving.knative.dev/service": "hello"
    },
    "ownerReferences": [{"apiVersion": "serving.knative.dev/v1", "kind": "Route", "name": "hello", "uid": "5c3f1a52-1b0c-4d7e-8a1e-9b2f0c6d7e8f", "controller": true, "blockOwnerDeletion": true}]
  },
  "spec": {
    "httpOption": "Enabled",
    "rules": [
      {
        "hosts": ["hello.default", "hello.default.svc", "hello.default.svc.cluster.local"],
        "http": {
          "paths": [
            {
              "splits": [
                {
                  "appendHeaders": {"Knative-Serving-Namespace": "default", "Knative-Serving-Revision": "hello-00001"},
                  "percent": 100,
                  "serviceName": "hello-00001",
                  "serviceNamespace": "default",
                  "servicePort": 80
                }
              ]
            }
          ]
        },
        "visibility": "ClusterLocal"
      },
      {
        "hosts": ["hello.default.example.com"],
        "http": {
          "paths": [
            {
              "splits": [
                {
                  "appendHeaders": {"Knative-Serving-Namespace": "default", "Knative-Serving-Revision": "hello-00001"},
                  "percent": 100,
                  "serviceName": "hello-00001",
                  "serviceNamespace": "default",
                  "servicePort": 80
                }
              ]
            }
          ]
        },
        "visibility": "ExternalIP"
      }
    ]
  },
  "status": {
    "observedGeneration": 1,
    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-20T10:00:05Z"}],
    "privateLoadBalancer": {"ingress": [{"domainInternal": "kourier-internal.kourier-system.svc.cluster.local"}]},
    "publicLoadBalancer": {"ingress": [{"domainInternal": "kourier.kourier-system.svc.cluster.local"}]}
  }
}`,
	},
	{
		name:        "defaults-applied",
		description: "Knative's defaults: no visibility (ExternalIP), a single split without percent (100); no path, no httpOption (neither is defaulted)",
		object: `{
  "apiVersion": "networking.internal.knative.dev/v1alpha1",
  "kind": "Ingress",
  "metadata": {"name": "defaults", "namespace": "team-a"},
  "spec": {
    "rules": [
      {
        "hosts": ["defaults.team-a.example.com"],
        "http": {"paths": [{"splits": [{"serviceName": "defaults-00003", "serviceNamespace": "team-a", "servicePort": 80}]}]}
      },
      {
        "hosts": ["defaults.team-a.svc.cluster.local"],
        "visibility": "",
        "http": {"paths": [{"splits": [{"serviceName": "defaults-00003", "serviceNamespace": "team-a", "servicePort": 80, "percent": 0}]}]}
      }
    ]
  }
}`,
	},
	{
		name:        "traffic-split-and-tags",
		description: "a 90/10 split, a split at 0 % beside another (not defaulted, left out by omitempty), a tag route matching a header, several paths",
		object: `{
  "apiVersion": "networking.internal.knative.dev/v1alpha1",
  "kind": "Ingress",
  "metadata": {"name": "shop", "namespace": "prod"},
  "spec": {
    "httpOption": "Enabled",
    "rules": [
      {
        "hosts": ["shop.prod.example.com"],
        "visibility": "ExternalIP",
        "http": {
          "paths": [
            {
              "headers": {"Knative-Serving-Tag": {"exact": "canary"}},
              "appendHeaders": {"Knative-Serving-Tag": "canary"},
              "splits": [
                {"serviceName": "shop-00008", "serviceNamespace": "prod", "servicePort": 80, "percent": 100,
                 "appendHeaders": {"Knative-Serving-Namespace": "prod", "Knative-Serving-Revision": "shop-00008"}}
              ]
            },
            {
              "path": "/api",
              "splits": [
                {"serviceName": "shop-00007", "serviceNamespace": "prod", "servicePort": 80, "percent": 90,
                 "appendHeaders": {"Knative-Serving-Namespace": "prod", "Knative-Serving-Revision": "shop-00007"}},
                {"serviceName": "shop-00008", "serviceNamespace": "prod", "servicePort": 80, "percent": 10,
                 "appendHeaders": {"Knative-Serving-Namespace": "prod", "Knative-Serving-Revision": "shop-00008"}}
              ]
            },
            {
              "path": "/",
              "splits": [
                {"serviceName": "shop-00007", "serviceNamespace": "prod", "servicePort": 80, "percent": 100,
                 "appendHeaders": {"Knative-Serving-Namespace": "prod", "Knative-Serving-Revision": "shop-00007"}},
                {"serviceName": "shop-00006", "serviceNamespace": "prod", "servicePort": 80, "percent": 0,
                 "appendHeaders": {"Knative-Serving-Namespace": "prod", "Knative-Serving-Revision": "shop-00006"}}
              ]
            }
          ]
        }
      }
    ]
  }
}`,
	},
	{
		name:        "domain-mapping",
		description: "a DomainMapping's KIngress: rewriteHost, a named port (IntOrString as a string), header matches whose keys Go sorts (upper case before lower case), a string port that looks like a number",
		object: `{
  "apiVersion": "networking.internal.knative.dev/v1alpha1",
  "kind": "Ingress",
  "metadata": {"name": "www.example.org", "namespace": "web"},
  "spec": {
    "httpOption": "Enabled",
    "rules": [
      {
        "hosts": ["www.example.org"],
        "visibility": "ExternalIP",
        "http": {
          "paths": [
            {
              "rewriteHost": "site.web.svc.cluster.local",
              "headers": {"x-variant": {"exact": "b"}, "X-Region": {"exact": "edge"}, "Accept": {"exact": "text/html"}},
              "appendHeaders": {"X-From": "domain-mapping", "K-Original-Host": "www.example.org"},
              "splits": [{"serviceName": "kourier-internal", "serviceNamespace": "kourier-system", "servicePort": "http2"}]
            },
            {
              "rewriteHost": "site.web.svc.cluster.local",
              "splits": [{"serviceName": "kourier-internal", "serviceNamespace": "kourier-system", "servicePort": "80"}]
            }
          ]
        }
      }
    ]
  }
}`,
	},
	{
		name:        "tls-redirected",
		description: "TLS entries (one without secretNamespace) and httpOption Redirected",
		object: `{
  "apiVersion": "networking.internal.knative.dev/v1alpha1",
  "kind": "Ingress",
  "metadata": {"name": "secure", "namespace": "default"},
  "spec": {
    "tls": [
      {"hosts": ["secure.default.example.com"], "secretName": "route-1234", "secretNamespace": "default"},
      {"hosts": ["secure.example.net", "*.secure.example.net"], "secretName": "wildcard-cert"}
    ],
    "httpOption": "Redirected",
    "rules": [
      {
        "hosts": ["secure.default.example.com", "secure.example.net"],
        "visibility": "ExternalIP",
        "http": {"paths": [{"splits": [{"serviceName": "secure-00001", "serviceNamespace": "default", "servicePort": 443, "percent": 100,
          "appendHeaders": {"Knative-Serving-Namespace": "default", "Knative-Serving-Revision": "secure-00001"}}]}]}
      }
    ]
  }
}`,
	},
	{
		name:        "escaping-and-unicode",
		description: "characters Go's encoder escapes (<, >, &, U+2028, U+2029, control characters, quote, backslash), a lone surrogate (U+FFFD after decoding), non-ASCII text and map keys whose UTF-8 byte order differs from UTF-16 order",
		object: `{
  "apiVersion": "networking.internal.knative.dev/v1alpha1",
  "kind": "Ingress",
  "metadata": {"name": "escapes", "namespace": "ns-ü"},
  "spec": {
    "rules": [
      {
        "hosts": ["escapes.example.com", "bücher.example.com"],
        "http": {
          "paths": [
            {
              "path": "/a&b/<c>",
              "headers": {"X-Test": {"exact": "<script>alert('x')</script> & co"}},
              "appendHeaders": {
                "X-Html": "<b>&amp;</b>",
                "X-Controls": "tab\there\nnew\rcr\bbs\ffeed\u0001\u001f\u007f\u0000",
                "X-Quotes": "\"quoted\" and \\backslash\\ and /slash/",
                "X-Separators": "line\u2028para\u2029end",
                "X-Lone-Surrogate": "a\ud800b",
                "X-Unicode": "日本語 é ñ 😀",
                "é": "e-acute",
                "😀": "emoji (UTF-16 sorts it before U+FF21, UTF-8 after)",
                "Ａ": "fullwidth A U+FF21",
                "z": "ascii z"
              },
              "splits": [{"serviceName": "escapes-00001", "serviceNamespace": "ns-ü", "servicePort": 80}]
            }
          ]
        }
      }
    ]
  }
}`,
	},
	{
		name:        "fields-go-drops",
		description: "fields the typed spec does not have are dropped by Go's decoder: older Knative's path timeout and retries, spec-level visibility, a key in the wrong case (client-go decodes case-sensitively), unknown extras",
		object: `{
  "apiVersion": "networking.internal.knative.dev/v1alpha1",
  "kind": "Ingress",
  "metadata": {"name": "legacy", "namespace": "default"},
  "spec": {
    "visibility": "ExternalIP",
    "deprecatedGeneration": 3,
    "rules": [
      {
        "hosts": ["legacy.default.example.com"],
        "visibility": "ExternalIP",
        "extra": {"whatever": true},
        "http": {
          "paths": [
            {
              "timeout": "600s",
              "retries": {"attempts": 3, "perTryTimeout": "10m0s"},
              "Path": "/ignored-because-of-case",
              "splits": [{"serviceName": "legacy-00002", "serviceNamespace": "default", "servicePort": 80, "percent": 100, "weight": 7,
                "appendHeaders": {"Knative-Serving-Namespace": "default", "Knative-Serving-Revision": "legacy-00002"}}]
            }
          ]
        }
      }
    ]
  }
}`,
	},
	{
		name:        "empty-and-missing",
		description: "empty and missing values: empty maps and lists (omitempty), paths and splits without omitempty (null when missing, [] when empty), a missing port (0), a missing serviceNamespace (\"\"), an empty host kept, a negative percent kept, null values (a null IntOrString port is the number 0)",
		object: `{
  "apiVersion": "networking.internal.knative.dev/v1alpha1",
  "kind": "Ingress",
  "metadata": {"name": "empties", "namespace": "default"},
  "spec": {
    "tls": [],
    "httpOption": null,
    "rules": [
      {"hosts": [], "visibility": "ClusterLocal", "http": {"paths": []}},
      {"hosts": ["a.example.com", ""], "http": {}},
      {
        "hosts": ["b.example.com"],
        "http": {
          "paths": [
            {"path": "", "rewriteHost": "", "headers": {}, "appendHeaders": {}, "splits": []},
            {"path": "/nosplits"},
            {"path": "/nulls", "headers": null, "appendHeaders": null, "splits": null},
            {"path": "/odd", "splits": [{"serviceName": "odd", "servicePort": null, "percent": null}, {"serviceName": "neg", "serviceNamespace": "default", "servicePort": 8080, "percent": -5, "appendHeaders": {}}]}
          ]
        }
      }
    ]
  }
}`,
	},
	{
		name:        "empty-spec",
		description: "a spec with nothing in it: the hash is of {} followed by namespace and name",
		object: `{
  "apiVersion": "networking.internal.knative.dev/v1alpha1",
  "kind": "Ingress",
  "metadata": {"name": "blank", "namespace": "default"},
  "spec": {}
}`,
	},
	{
		name:        "no-spec",
		description: "an object without a spec: Go's zero IngressSpec, encoded as {}",
		object: `{
  "apiVersion": "networking.internal.knative.dev/v1alpha1",
  "kind": "Ingress",
  "metadata": {"name": "nothing", "namespace": "other"}
}`,
	},
}
