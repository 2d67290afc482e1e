/**
 * Puppet's registered certificate extensions, without ASN.1 schemas or zod, for the wire contract, the
 * autosign policy and the userdata renderer alike.
 */
/** Puppet's registered `pp_*` certificate extensions (OID arc 1.3.6.1.4.1.34380.1.1). */
export const PUPPET_EXTENSIONS: Readonly<Record<string, string>> = {
  pp_uuid: "1.3.6.1.4.1.34380.1.1.1",
  pp_instance_id: "1.3.6.1.4.1.34380.1.1.2",
  pp_image_name: "1.3.6.1.4.1.34380.1.1.3",
  pp_preshared_key: "1.3.6.1.4.1.34380.1.1.4",
  pp_cost_center: "1.3.6.1.4.1.34380.1.1.5",
  pp_product: "1.3.6.1.4.1.34380.1.1.6",
  pp_project: "1.3.6.1.4.1.34380.1.1.7",
  pp_application: "1.3.6.1.4.1.34380.1.1.8",
  pp_service: "1.3.6.1.4.1.34380.1.1.9",
  pp_employee: "1.3.6.1.4.1.34380.1.1.10",
  pp_created_by: "1.3.6.1.4.1.34380.1.1.11",
  pp_environment: "1.3.6.1.4.1.34380.1.1.12",
  pp_role: "1.3.6.1.4.1.34380.1.1.13",
  pp_software_version: "1.3.6.1.4.1.34380.1.1.14",
  pp_department: "1.3.6.1.4.1.34380.1.1.15",
  pp_cluster: "1.3.6.1.4.1.34380.1.1.16",
  pp_provisioner: "1.3.6.1.4.1.34380.1.1.17",
  pp_region: "1.3.6.1.4.1.34380.1.1.18",
  pp_datacenter: "1.3.6.1.4.1.34380.1.1.19",
  pp_zone: "1.3.6.1.4.1.34380.1.1.20",
  pp_network: "1.3.6.1.4.1.34380.1.1.21",
  pp_securitypolicy: "1.3.6.1.4.1.34380.1.1.22",
  pp_cloudplatform: "1.3.6.1.4.1.34380.1.1.23",
  pp_apptier: "1.3.6.1.4.1.34380.1.1.24",
  pp_hostname: "1.3.6.1.4.1.34380.1.1.25",
};

/** The `pp_*` name of a Puppet extension OID, or undefined for any other OID. */
export function puppetExtensionName(oid: string): string | undefined {
  return Object.entries(PUPPET_EXTENSIONS).find(([, id]) => id === oid)?.[0];
}

/** An extension value espm passes into a CSR or a YAML file: printable, no quotes or backslashes. */
export const EXTENSION_VALUE_PATTERN = /^[A-Za-z0-9 ._:/@+=,-]{1,255}$/;
