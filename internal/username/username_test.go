package username

import "testing"

func TestKeyJoinsTheThreeFormsOfADomainUser(t *testing.T) {
	forms := []string{`corp\svc-connector`, "corp%92svc-connector", "corp\x92svc-connector", "corp\u0092svc-connector"}
	for _, f := range forms {
		if got := Key(f); got != `corp\svc-connector` {
			t.Errorf("Key(%q) = %q, want corp\\svc-connector", f, got)
		}
	}
}

func TestKeyLeavesOtherNamesAlone(t *testing.T) {
	for _, name := range []string{
		"connector",
		"corp%5Csvc", // a real percent-encoding of `\` is not decoded: only NetApp's %92 form is
		"Вася",       // 'В' is D0 92 in UTF-8: its 0x92 is a continuation byte, not a `\`
		"user%9",     // not a whole %92
		"us\xffer",   // invalid UTF-8 other than 0x92 stays byte for byte
		"",
	} {
		if got := Key(name); got != name {
			t.Errorf("Key(%q) = %q, want it unchanged", name, got)
		}
	}
	if Key("corp%92Вася\x92x") != `corp\Вася\x` {
		t.Errorf("mixed: got %q", Key("corp%92Вася\x92x"))
	}
}

func TestKeyDoesNotAllocateForPlainNames(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = Key("svc-connector@example.com") }); n != 0 {
		t.Fatalf("Key allocates %v times for a plain name", n)
	}
}
