package devstack_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The repository is Apache-2.0: the full license text, and a README that
// says so and links the documents a newcomer needs.
func TestLicenseAndREADMELinks(t *testing.T) {
	t.Parallel()
	license, err := os.ReadFile("../../LICENSE")
	if err != nil {
		t.Fatalf("no LICENSE: %v", err)
	}
	// The standard text from its title to its appendix, with the project's
	// copyright filled in.
	for _, part := range []string{
		"Apache License\n                           Version 2.0, January 2004",
		"TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
		"9. Accepting Warranty or Additional Liability.",
		"END OF TERMS AND CONDITIONS",
		"Copyright The wsgateway authors",
		`Licensed under the Apache License, Version 2.0 (the "License");`,
	} {
		if !strings.Contains(string(license), part) {
			t.Errorf("LICENSE lacks %q", part)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]bool{}
	for _, m := range regexp.MustCompile(`\]\(([^)#]+)\)`).FindAllStringSubmatch(string(readme), -1) {
		links[m[1]] = true
	}
	for _, target := range []string{"LICENSE", "docs/apigateway-fidelity.md"} {
		if !links[target] {
			t.Errorf("README does not link %s", target)
		}
		if _, err := os.Stat("../../" + target); err != nil {
			t.Errorf("README links %s: %v", target, err)
		}
	}
}
