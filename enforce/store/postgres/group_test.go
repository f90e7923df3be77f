package postgres

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// A merged group must carry every column of every insert: a column left
// out is NULL-padded by unnest, the group's statement fails, and every
// insert of it is retried alone, one transaction each, without a word.
func TestMergeKeepsEveryColumn(t *testing.T) {
	one := func(v string) *columns {
		var c columns
		if err := c.alert(model.Alert{Scenario: "s", Value: v}); err != nil {
			t.Fatal(err)
		}
		d := model.Decision{ID: 1, Value: netip.MustParsePrefix(v + "/32"), Ports: []uint16{22}, Protocol: "tcp", Until: time.Now()}
		if err := c.decision(1, d); err != nil {
			t.Fatal(err)
		}
		return &c
	}
	var all columns
	all.merge(one("192.0.2.1"))
	all.merge(one("192.0.2.2"))
	all.merge(one("192.0.2.3"))
	v := reflect.ValueOf(all)
	for i := range v.NumField() {
		if n := v.Field(i).Len(); n != 3 {
			t.Errorf("column %s holds %d values after merging 3 inserts", v.Type().Field(i).Name, n)
		}
	}
	if want := []int64{1, 2, 3}; !reflect.DeepEqual(all.aord, want) {
		t.Errorf("decisions' alert ordinals %v, want %v", all.aord, want)
	}
}
