package manifest

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The module proxy serves no Go types for spire-controller-manager, Emissary or External
// Secrets, so these are minimal structs for the fields ztbank uses, transcribed from each
// project's documented schema. They are decoded with unknown fields disallowed: a field that
// is not here is either a typo or a new field someone must add here on purpose.

// ClusterSPIFFEID is spire-controller-manager's spire.spiffe.io/v1alpha1 ClusterSPIFFEID.
type ClusterSPIFFEID struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ClusterSPIFFEIDSpec `json:"spec"`
}

// ClusterSPIFFEIDSpec is the part of the spec ztbank sets, plus the flags whose accidental
// use would change identities (admin, downstream, fallback) so the policies can forbid them.
type ClusterSPIFFEIDSpec struct {
	SPIFFEIDTemplate          string                `json:"spiffeIDTemplate"`
	ClassName                 string                `json:"className,omitempty"`
	TTL                       metav1.Duration       `json:"ttl,omitempty"`
	JWTTTL                    metav1.Duration       `json:"jwtTtl,omitempty"`
	DNSNameTemplates          []string              `json:"dnsNameTemplates,omitempty"`
	WorkloadSelectorTemplates []string              `json:"workloadSelectorTemplates,omitempty"`
	FederatesWith             []string              `json:"federatesWith,omitempty"`
	NamespaceSelector         *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	PodSelector               *metav1.LabelSelector `json:"podSelector,omitempty"`
	Admin                     bool                  `json:"admin,omitempty"`
	Downstream                bool                  `json:"downstream,omitempty"`
	AutoPopulateDNSNames      bool                  `json:"autoPopulateDNSNames,omitempty"`
	Fallback                  bool                  `json:"fallback,omitempty"`
	Hint                      string                `json:"hint,omitempty"`
}

// ControllerManagerConfig is spire-controller-manager's configuration file (not an API object,
// but it has the same shape and traps: clusterName and className).
type ControllerManagerConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Metrics           struct {
		BindAddress string `json:"bindAddress,omitempty"`
	} `json:"metrics,omitempty"`
	Health struct {
		HealthProbeBindAddress string `json:"healthProbeBindAddress,omitempty"`
	} `json:"health,omitempty"`
	LeaderElection struct {
		LeaderElect       bool   `json:"leaderElect,omitempty"`
		ResourceName      string `json:"resourceName,omitempty"`
		ResourceNamespace string `json:"resourceNamespace,omitempty"`
	} `json:"leaderElection,omitempty"`
	ClusterName                        string   `json:"clusterName"`
	ClusterDomain                      string   `json:"clusterDomain,omitempty"`
	TrustDomain                        string   `json:"trustDomain"`
	ClassName                          string   `json:"className,omitempty"`
	WatchClassless                     bool     `json:"watchClassless,omitempty"`
	IgnoreNamespaces                   []string `json:"ignoreNamespaces,omitempty"`
	SPIREServerSocketPath              string   `json:"spireServerSocketPath,omitempty"`
	ValidatingWebhookConfigurationName string   `json:"validatingWebhookConfigurationName,omitempty"`
}

// Emissary getambassador.io/v3alpha1 resources.

// Mapping routes a prefix to an upstream service.
type Mapping struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		AmbassadorID         []string          `json:"ambassador_id,omitempty"`
		Hostname             string            `json:"hostname,omitempty"`
		Prefix               string            `json:"prefix"`
		PrefixRegex          bool              `json:"prefix_regex,omitempty"`
		Rewrite              *string           `json:"rewrite,omitempty"`
		Service              string            `json:"service"`
		TLS                  string            `json:"tls,omitempty"`
		TimeoutMS            int               `json:"timeout_ms,omitempty"`
		ConnectTimeoutMS     int               `json:"connect_timeout_ms,omitempty"`
		IdleTimeoutMS        int               `json:"idle_timeout_ms,omitempty"`
		BypassAuth           bool              `json:"bypass_auth,omitempty"`
		RemoveRequestHeaders []string          `json:"remove_request_headers,omitempty"`
		Headers              map[string]string `json:"headers,omitempty"`
	} `json:"spec"`
}

// Listener opens a port on Emissary.
type Listener struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		AmbassadorID  []string `json:"ambassador_id,omitempty"`
		Port          int      `json:"port"`
		Protocol      string   `json:"protocol,omitempty"`
		ProtocolStack []string `json:"protocolStack,omitempty"`
		SecurityModel string   `json:"securityModel"`
		L7Depth       int      `json:"l7Depth,omitempty"`
		StatsPrefix   string   `json:"statsPrefix,omitempty"`
		HostBinding   struct {
			Namespace *struct {
				From string `json:"from"`
			} `json:"namespace,omitempty"`
			Selector *metav1.LabelSelector `json:"selector,omitempty"`
		} `json:"hostBinding"`
	} `json:"spec"`
}

// Host says which hostnames Emissary serves and how it treats insecure requests.
type Host struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		AmbassadorID []string `json:"ambassador_id,omitempty"`
		Hostname     string   `json:"hostname"`
		AcmeProvider *struct {
			Authority string `json:"authority,omitempty"`
			Email     string `json:"email,omitempty"`
		} `json:"acmeProvider,omitempty"`
		TLSSecret *struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace,omitempty"`
		} `json:"tlsSecret,omitempty"`
		TLSContext *struct {
			Name string `json:"name"`
		} `json:"tlsContext,omitempty"`
		RequestPolicy *struct {
			Insecure struct {
				Action         string `json:"action,omitempty"`
				AdditionalPort *int   `json:"additionalPort,omitempty"`
			} `json:"insecure"`
		} `json:"requestPolicy,omitempty"`
		MappingSelector *metav1.LabelSelector `json:"mappingSelector,omitempty"`
	} `json:"spec"`
}

// TLSContext holds client or server TLS settings that Mappings and the AuthService name.
type TLSContext struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		AmbassadorID      []string `json:"ambassador_id,omitempty"`
		Hosts             []string `json:"hosts,omitempty"`
		Secret            string   `json:"secret,omitempty"`
		CertChainFile     string   `json:"cert_chain_file,omitempty"`
		PrivateKeyFile    string   `json:"private_key_file,omitempty"`
		CACertChainFile   string   `json:"cacert_chain_file,omitempty"`
		ALPNProtocols     string   `json:"alpn_protocols,omitempty"`
		MinTLSVersion     string   `json:"min_tls_version,omitempty"`
		MaxTLSVersion     string   `json:"max_tls_version,omitempty"`
		CertRequired      *bool    `json:"cert_required,omitempty"`
		SecretNamespacing *bool    `json:"secret_namespacing,omitempty"`
	} `json:"spec"`
}

// AuthService points Emissary's ext_authz filter at the edge.
type AuthService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		AmbassadorID                []string          `json:"ambassador_id,omitempty"`
		AuthService                 string            `json:"auth_service"`
		Proto                       string            `json:"proto,omitempty"`
		ProtocolVersion             string            `json:"protocol_version,omitempty"`
		PathPrefix                  string            `json:"path_prefix,omitempty"`
		TLS                         string            `json:"tls,omitempty"`
		TimeoutMS                   *int              `json:"timeout_ms,omitempty"`
		FailureModeAllow            bool              `json:"failure_mode_allow"`
		AllowedRequestHeaders       []string          `json:"allowed_request_headers,omitempty"`
		AllowedAuthorizationHeaders []string          `json:"allowed_authorization_headers,omitempty"`
		AddAuthHeaders              map[string]string `json:"add_auth_headers,omitempty"`
		AddLinkerdHeaders           bool              `json:"add_linkerd_headers,omitempty"`
		StatusOnError               *struct {
			Code int `json:"code"`
		} `json:"status_on_error,omitempty"`
		IncludeBody *struct {
			MaxBytes     int  `json:"max_bytes"`
			AllowPartial bool `json:"allow_partial"`
		} `json:"include_body,omitempty"`
	} `json:"spec"`
}

// External Secrets Operator external-secrets.io/v1 resources (ADR 0401).

// ExternalSecret copies values from AWS Parameter Store / Secrets Manager into a Secret.
type ExternalSecret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		RefreshInterval string `json:"refreshInterval,omitempty"`
		SecretStoreRef  struct {
			Name string `json:"name"`
			Kind string `json:"kind"`
		} `json:"secretStoreRef"`
		Target struct {
			Name           string `json:"name"`
			CreationPolicy string `json:"creationPolicy,omitempty"`
			DeletionPolicy string `json:"deletionPolicy,omitempty"`
			// Template shapes the Secret from the fetched values (engine v2: Go templates).
			Template *struct {
				EngineVersion string            `json:"engineVersion,omitempty"`
				Type          string            `json:"type,omitempty"`
				MergePolicy   string            `json:"mergePolicy,omitempty"`
				Data          map[string]string `json:"data,omitempty"`
			} `json:"template,omitempty"`
		} `json:"target"`
		Data []struct {
			SecretKey string `json:"secretKey"`
			RemoteRef struct {
				Key      string `json:"key"`
				Property string `json:"property,omitempty"`
				Version  string `json:"version,omitempty"`
			} `json:"remoteRef"`
		} `json:"data,omitempty"`
	} `json:"spec"`
}

// SecretStore says where the ExternalSecrets of its namespace read from and with which
// identity: on EKS, Parameter Store as the tenant's reader role (role), assumed with ESO's
// own Pod Identity credentials. Only what the ESO v1 schema has for AWS.
type SecretStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              SecretStoreSpec `json:"spec"`
}

// ClusterSecretStore is the cluster-wide SecretStore. Nothing generated uses one (a tenant's
// reader role must not be reachable from another namespace); kept so a stray one is decoded
// and seen by the checks rather than rejected as an unknown kind.
type ClusterSecretStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              SecretStoreSpec `json:"spec"`
}

// SecretStoreSpec is the part of a (Cluster)SecretStore spec the overlays set.
type SecretStoreSpec struct {
	Provider struct {
		AWS *struct {
			Service string `json:"service"`
			Region  string `json:"region"`
			Role    string `json:"role,omitempty"`
			Auth    *struct {
				JWT *struct {
					ServiceAccountRef struct {
						Name      string `json:"name"`
						Namespace string `json:"namespace,omitempty"`
					} `json:"serviceAccountRef"`
				} `json:"jwt,omitempty"`
			} `json:"auth,omitempty"`
		} `json:"aws,omitempty"`
	} `json:"provider"`
}
