package review

import (
	_ "embed"
	"encoding/json"
	"html/template"
	"io"
	"strings"
)

//go:embed review.html
var pageText string

// page is the HTML report: tables rendered here, the timeline chart drawn
// by the page's own script from the report embedded as JSON. Everything is
// inline (the page's Content-Security-Policy forbids fetching anything).
var page = template.Must(template.New("review").Funcs(template.FuncMap{
	"stamp":      stamp,
	"label":      productLabel,
	"suggestion": suggestionText,
	"join":       func(s []string) string { return strings.Join(s, ", ") },
}).Parse(pageText))

//go:embed diff.html
var diffPageText string

// diffPage is the HTML page of `egret diff`, in the review page's style.
var diffPage = template.Must(template.Must(page.Clone()).New("diff").Funcs(template.FuncMap{
	"dest": DiffRow.Destination,
}).Parse(diffPageText))

// WriteHTML writes the diff as one self-contained HTML page (no script).
func (r *DiffReport) WriteHTML(w io.Writer) error { return diffPage.ExecuteTemplate(w, "diff", r) }

// WriteHTML writes the report as one self-contained HTML page.
func (r *Report) WriteHTML(w io.Writer) error {
	// encoding/json escapes <, > and & in strings, so the data cannot end
	// the script element it is embedded in.
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return page.Execute(w, struct {
		*Report
		Data template.JS
	}{r, template.JS(data)})
}
