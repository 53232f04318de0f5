// The configuration tandem runs with when given none (CONTRACT §1). It is
// the text of config/tandem.yaml, kept identical by a test, so that the file
// users copy is exactly what runs by default.

export const DEFAULT_CONFIG_YAML = `# yaml-language-server: $schema=../schema/tandem.schema.json
#
# tandem's embedded default: the common sidecar layout. The Pod exposes
# 15000; every request goes to the application on 127.0.0.1:8080. The admin
# API stays on loopback.
admin:
  address: 127.0.0.1
  port: 9901

listeners:
  - name: inbound
    address: 0.0.0.0
    port: 15000
    routes:
      - match: { prefix: / }
        cluster: app

clusters:
  - name: app
    endpoints: [127.0.0.1:8080]
`;
