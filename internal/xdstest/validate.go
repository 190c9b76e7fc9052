package xdstest

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// ProtoValidate is a Validator that runs the protoc-gen-validate rules
// generated into the Envoy API (ValidateAll), as Envoy does before
// accepting a resource: a response with an invalid resource is NACKed.
// Like PGV, it does not look inside typed_config Any fields.
func ProtoValidate(typeURL string, resources []proto.Message) error {
	for _, m := range resources {
		v, ok := m.(interface{ ValidateAll() error })
		if !ok {
			continue
		}
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s %q: %w", ShortType(typeURL), resourceName(m), err)
		}
	}
	return nil
}

// Validators combines validators; the first error wins.
func Validators(vs ...Validator) Validator {
	return func(typeURL string, resources []proto.Message) error {
		for _, v := range vs {
			if v == nil {
				continue
			}
			if err := v(typeURL, resources); err != nil {
				return err
			}
		}
		return nil
	}
}
