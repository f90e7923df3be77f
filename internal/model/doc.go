// Package model holds the two plain types that detection hands to
// enforcement: Alert and Decision. Neither detect nor enforce imports the
// other; both import this package.
package model
