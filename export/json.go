package export

import (
	"bytes"
	"encoding/json"
	"io"
	"sort"
)

// jsonDoc is the one JSON document WriteJSON writes.
type jsonDoc struct {
	Generator string     `json:"generator"` // "egret VERSION"
	Products  []string   `json:"products"`
	Direction Direction  `json:"direction"`
	Rules     []jsonRule `json:"rules"`
}

// jsonRule is one row of a document. Host and CIDR are empty when Unset
// names the variable that stands for the whole destination; Omitted says
// why a row is left out of every other format.
type jsonRule struct {
	ID        string   `json:"id"` // e.g. netapp-cvo-aws/n12
	Product   string   `json:"product"`
	Source    string   `json:"source"` // the seed document
	Purpose   string   `json:"purpose"`
	Kind      string   `json:"kind"`     // proxy or network
	Protocol  string   `json:"protocol"` // tcp, udp or icmp
	Direction string   `json:"direction"`
	Ports     []string `json:"ports"` // "443", "18600-18699"; empty for icmp
	Host      string   `json:"host,omitempty"`
	CIDR      string   `json:"cidr,omitempty"`
	Unset     string   `json:"unset,omitempty"`
	Paths     []string `json:"paths,omitempty"`
	Broad     string   `json:"broad,omitempty"`
	Pinned    []string `json:"pinned,omitempty"`
	ViaEgret  []uint16 `json:"via_egret,omitempty"` // proxy ports taken out of the row's ports
	Omitted   string   `json:"omitted,omitempty"`
	File      string   `json:"file"`
	Line      int      `json:"line"`
}

// WriteJSON writes the rules as data, one object per row, for tools egret
// has no format for:
//
//	{"generator": "egret v1.2.0", "products": ["dt-cloud-connector"], "direction": "egress",
//	 "rules": [{"id": "dt-cloud-connector/p1", "kind": "proxy", "host": "…", "ports": ["443"], …}]}
//
// Every row is there, in document order (by product as given, proxy rules
// before network rules, each in file order): rows with an unset variable,
// naming it in "unset", and rows left out of the other formats, saying why
// in "omitted". JSON can say all of it, so WriteJSON reports no Skip.
func WriteJSON(w io.Writer, rs *Ruleset) ([]Skip, error) {
	doc := jsonDoc{
		Generator: "egret " + rs.Version, Products: rs.Products, Direction: rs.Direction,
		Rules: make([]jsonRule, 0, len(rs.Entries)+len(rs.Omitted)),
	}
	if doc.Products == nil {
		doc.Products = []string{}
	}
	for _, row := range rs.rows() {
		doc.Rules = append(doc.Rules, newJSONRule(row.entry, row.omitted))
	}
	return nil, writeJSONDoc(w, &doc)
}

// writeJSONDoc writes the document with one rule on each line, so that
// the output reads, greps and diffs by row and is still one JSON value.
func writeJSONDoc(w io.Writer, doc *jsonDoc) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // purposes say "&"
	head := *doc
	head.Rules = nil
	if err := enc.Encode(head); err != nil {
		return err
	}
	// {"generator":…,"rules":null}\n becomes {"generator":…,"rules":[
	b.Truncate(b.Len() - len("null}\n"))
	b.WriteString("[")
	for i := range doc.Rules {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n")
		if err := enc.Encode(doc.Rules[i]); err != nil {
			return err
		}
		b.Truncate(b.Len() - 1) // the encoder's newline
	}
	b.WriteString("\n]}\n")
	_, err := w.Write(b.Bytes())
	return err
}

type jsonRow struct {
	entry   *Entry
	omitted string
}

// rows is the entries and the omitted rows together, in document order.
func (rs *Ruleset) rows() []jsonRow {
	rows := make([]jsonRow, 0, len(rs.Entries)+len(rs.Omitted))
	for i := range rs.Entries {
		rows = append(rows, jsonRow{entry: &rs.Entries[i]})
	}
	for i := range rs.Omitted {
		rows = append(rows, jsonRow{entry: &rs.Omitted[i].Entry, omitted: rs.Omitted[i].Reason})
	}
	rank := map[string]int{}
	for i, p := range rs.Products {
		if _, dup := rank[p]; !dup {
			rank[p] = i
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i].entry, rows[j].entry
		if rank[a.Product] != rank[b.Product] {
			return rank[a.Product] < rank[b.Product]
		}
		if a.Proxy != b.Proxy {
			return a.Proxy
		}
		return a.ID.N < b.ID.N
	})
	return rows
}

func newJSONRule(e *Entry, omitted string) jsonRule {
	r := jsonRule{
		ID: e.ID.String(), Product: e.Product, Source: e.Source, Purpose: e.Purpose,
		Kind: "network", Protocol: e.Protocol, Direction: e.Direction, Ports: []string{},
		Host: e.Host, Unset: e.Unset, Paths: e.Paths, Broad: e.Broad,
		ViaEgret: e.ViaEgret, Omitted: omitted, File: e.File, Line: e.Line,
	}
	if e.Proxy {
		r.Kind = "proxy"
	}
	if e.CIDR.IsValid() {
		r.CIDR = e.CIDR.String()
	}
	for _, p := range e.Ports {
		r.Ports = append(r.Ports, p.String())
	}
	for _, a := range e.Pinned {
		r.Pinned = append(r.Pinned, a.String())
	}
	return r
}
