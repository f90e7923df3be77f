// Package geoip answers country, AS and network questions about an
// address from MaxMind-format databases on disk (GeoLite2/GeoIP2 City and
// ASN, or any database with the same fields). Nothing is ever downloaded:
// the paths come from the configuration.
package geoip
