/**
 * `espm enroll`: gets espm its client certificate at Puppet Server (CN `espm`) without hand-written
 * openssl. It makes the key (0600) at the path espm.ini names, submits a CSR through the CA's open
 * CSR endpoint, and tells the operator the one command to run on the CA; run again (or with
 * --wait), it fetches the signed certificate to the configured path. It checks that the CA's
 * certificate carries espm's key, so a leftover `espm` certificate of another key is never taken.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, request } from "espm-sdk/http";
import { createCsr, generateRsaKeyPairAsync } from "espm-sdk/x509";
import { certificatePublicKeySha256, inspectCsr } from "../ca/csr";
import { loadConfig } from "../config/config";

/** The certname espm's auth.conf rules allow. */
export const ESPM_CERTNAME = "espm";

export interface EnrollResult {
  /** `enrolled`: the certificate is in place; `submitted`: waiting for the CA to sign. */
  state: "enrolled" | "submitted";
  message: string;
}

export async function enroll(
  configFile: string,
  waitSeconds = 0,
  log: (line: string) => void = () => {},
): Promise<EnrollResult> {
  const config = loadConfig(configFile);
  const puppet = config.puppetserver;
  if (!puppet)
    throw new Error(
      `${configFile} has no [puppetserver] section: set espm up with --puppetserver-url, --puppetserver-ca, --puppetserver-cert and --puppetserver-key first`,
    );
  if (!existsSync(puppet.ca_bundle))
    throw new Error(
      `the Puppet CA bundle ${puppet.ca_bundle} (ca_bundle in espm.ini) does not exist: on Debian's puppetserver it is /var/lib/puppet/ssl/certs/ca.pem`,
    );

  if (!existsSync(puppet.key)) {
    const { privateKeyPem } = await generateRsaKeyPairAsync(2048);
    writeFileSync(puppet.key, privateKeyPem, { mode: 0o600, flag: "wx" });
    log(`made espm's key ${puppet.key} (mode 0600)`);
  }
  const keyPem = readFileSync(puppet.key, "utf8");
  const csr = createCsr(ESPM_CERTNAME, keyPem);
  const ourKey = inspectCsr(csr).publicKeySha256;

  const base = `${puppet.url.replace(/\/+$/, "")}/puppet-ca/v1`;
  const agent = new Agent({ connect: { ca: readFileSync(puppet.ca_bundle, "utf8") } });
  const get = async (path: string) => {
    const res = await request(`${base}/${path}`, { dispatcher: agent });
    return { status: res.statusCode, text: await res.body.text() };
  };
  try {
    const fetchCertificate = async (): Promise<boolean> => {
      const { status, text } = await get(`certificate/${ESPM_CERTNAME}`);
      if (status !== 200) return false;
      if (certificatePublicKeySha256(text) !== ourKey) {
        throw new Error(
          `the Puppet CA holds a certificate for ${ESPM_CERTNAME} with another key than ${puppet.key}; if it is an old one, run on the CA: puppetserver ca clean --certname ${ESPM_CERTNAME}, then espm enroll again`,
        );
      }
      writeFileSync(puppet.cert, text, { mode: 0o600 });
      return true;
    };

    if (await fetchCertificate())
      return { state: "enrolled", message: `espm's certificate is in ${puppet.cert} (mode 0600); start espm` };

    const pending = await get(`certificate_request/${ESPM_CERTNAME}`);
    if (pending.status === 200) {
      if (inspectCsr(pending.text).publicKeySha256 !== ourKey) {
        throw new Error(
          `the Puppet CA holds a pending request for ${ESPM_CERTNAME} with another key; run on the CA: puppetserver ca clean --certname ${ESPM_CERTNAME}, then espm enroll again`,
        );
      }
    } else {
      const res = await request(`${base}/certificate_request/${ESPM_CERTNAME}`, {
        method: "PUT",
        body: csr,
        headers: { "content-type": "text/plain" },
        dispatcher: agent,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200)
        throw new Error(
          `the Puppet CA refused espm's certificate request (${res.statusCode}): ${text.trim().slice(0, 300)}`,
        );
      log(`submitted espm's certificate request to ${puppet.url}`);
    }

    const sign = `puppetserver ca sign --certname ${ESPM_CERTNAME}`;
    if (waitSeconds > 0) log(`waiting up to ${waitSeconds} s for the CA to sign it: on the CA server, run: ${sign}`);
    for (const deadline = Date.now() + waitSeconds * 1000; Date.now() < deadline;) {
      await sleep(2000);
      if (await fetchCertificate())
        return { state: "enrolled", message: `espm's certificate is in ${puppet.cert} (mode 0600); start espm` };
    }
    return {
      state: "submitted",
      message: `espm's certificate request is waiting at the CA. On the CA server, run:\n  ${sign}\nthen run espm enroll again (or espm enroll --wait 300) to fetch the certificate to ${puppet.cert}`,
    };
  } finally {
    await agent.close();
  }
}
