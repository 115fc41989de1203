package proxy

import "fmt"

// ECHMode says what the transparent listener does with a ClientHello that
// offers Encrypted Client Hello. Chromium and other clients send the
// extension in every hello, as GREASE, even with no ECH configuration.
type ECHMode uint8

// ECH modes.
const (
	// ECHDeny denies every hello that offers ECH (reason ech): its outer
	// name may not be the name the client is going to.
	ECHDeny ECHMode = iota
	// ECHOuterSNI decides such a hello by its outer SNI like any other,
	// dials that name and replays the hello untouched; the decision line
	// says "ech":"outer-sni". The DNS door's removing the ech SvcParam
	// from HTTPS/SVCB answers is what keeps a client that resolves through
	// egret from holding a real ECH configuration.
	ECHOuterSNI
)

func (m ECHMode) String() string {
	if m == ECHOuterSNI {
		return "outer-sni"
	}
	return "deny"
}

// ParseECHMode parses "deny" (or "", the default) or "outer-sni".
func ParseECHMode(s string) (ECHMode, error) {
	switch s {
	case "deny", "":
		return ECHDeny, nil
	case "outer-sni":
		return ECHOuterSNI, nil
	}
	return 0, fmt.Errorf("ech %q: use deny or outer-sni", s)
}
