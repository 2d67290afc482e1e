/** The lab's espm (scripts/lab/espm.ts) and the groups the tests classify with. */
export * from "../../scripts/lab/espm";

export const GROUPS_YAML = `groups:
  web:
    description: Web servers
    classes:
      motd:
        message: from the web group
      ntp: {}
    parameters:
      role: web
      tier: front
  base:
    classes:
      ssh: { port: 22 }
`;
