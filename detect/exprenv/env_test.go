package exprenv

import (
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
)

func TestHelpers(t *testing.T) {
	e := New("testdata/data")
	for _, d := range []DataSpec{
		{DestFile: "words.txt", Type: "string"},
		{DestFile: "ua.regex.txt", Type: "regexp"},
		{DestFile: "tech.json", Type: "map"},
	} {
		if err := e.LoadData(d); err != nil {
			t.Fatal(err)
		}
	}
	evt := detect.NewEvent(detect.Line{Raw: `{"a":{"b":[1,"x"]},"msg":"hi"}`})
	evt.Meta["source_ip"] = "192.0.2.7"
	evt.Meta["http_path"] = "/wp-admin/x%20y"
	evt.Parsed["kv"] = `user=bob msg="hello world" id=3`
	vars := map[string]any{"evt": evt}
	tests := []struct {
		src  string
		want any
	}{
		{`Lower("AbC") == "abc" && Upper("a") == "A"`, true},
		{`"bar" in File("words.txt")`, true},
		{`"baz" in File("words.txt")`, false},
		{`RegexpInFile("CURL/7.1", "ua.regex.txt")`, true},
		{`RegexpInFile("firefox", "ua.regex.txt")`, false},
		{`LookupFile(evt.Meta.http_path, "tech.json")`, "wp"},
		{`LookupFile("/nothing", "tech.json")`, ""},
		{`JsonExtract(evt.Line.Raw, "a.b[1]")`, "x"},
		{`JsonExtract(evt.Line.Raw, "msg")`, "hi"},
		{`JsonExtract(evt.Line.Raw, "nope")`, ""},
		{`UnmarshalJSON(evt.Line.Raw, evt.Unmarshaled, "j") in ["", nil] && evt.Unmarshaled.j.msg == "hi"`, true},
		{`UnmarshalJSON("{bad", evt.Unmarshaled, "k") in ["", nil]`, false},
		{`ParseKV(evt.Parsed.kv, evt.Unmarshaled, "kv") == nil && evt.Unmarshaled.kv.msg == "hello world"`, true},
		{`IpInRange(evt.Meta.source_ip, "192.0.2.0/24")`, true},
		{`IpInRange(evt.Meta.source_ip, "10.0.0.0/8")`, false},
		{`IpToRange("2001:db8::1", "/64")`, "2001:db8::/64"},
		{`IsIPV6("2001:db8::1") && IsIPV4("1.2.3.4") && !IsIP("x")`, true},
		{`Match("a*c?", "abbbcd")`, true},
		{`Match("a*c", "abbbcd")`, false},
		{`PathUnescape(evt.Meta.http_path)`, "/wp-admin/x y"},
		{`QueryUnescape("a+b%3D")`, "a b="},
		{`TrimSpace(Split(" a, b", ",")[1])`, "b"},
		{`Sprintf("%s-%d", "x", 3)`, "x-3"},
		{`XMLGetNodeValue("<E><D n='1'>one</D><D n='2'>two</D></E>", "/E/D[@n='2']")`, "two"},
		{`XMLGetAttributeValue("<E><S><T at='v'/></S></E>", "/E/S[1]/T", "at")`, "v"},
	}
	for _, tt := range tests {
		p, err := e.Compile(tt.src, vars)
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		got, err := e.Run(p, vars)
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		if got != tt.want {
			t.Errorf("%s = %#v, want %#v", tt.src, got, tt.want)
		}
	}
}

func TestMedianIntervalAndStash(t *testing.T) {
	e := New("")
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	vars := map[string]any{"ts": []any{t0, t0.Add(time.Minute), t0.Add(3 * time.Minute), t0.Add(10 * time.Minute)}}
	p, err := e.Compile(`MedianInterval(ts) >= duration("2m")`, vars)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := e.RunBool(p, vars)
	if err != nil || !ok {
		t.Fatalf("median interval: %v %v", ok, err)
	}
	e.CreateStash("s", time.Minute, 1)
	e.SetInStash("s", "a", "1", t0)
	e.SetInStash("s", "b", "2", t0)
	if _, ok := e.GetFromStash("s", "a"); ok {
		t.Error("size 1 stash kept the oldest entry")
	}
	p, _ = e.Compile(`GetFromStash("s", "b")`, nil)
	if v, _ := e.RunString(p, nil); v != "2" {
		t.Errorf("GetFromStash = %q", v)
	}
}

func TestMissingData(t *testing.T) {
	e := New("testdata/data")
	if err := e.LoadData(DataSpec{DestFile: "absent.txt", Type: "string"}); err == nil {
		t.Fatal("loading a missing data file succeeded")
	}
}
