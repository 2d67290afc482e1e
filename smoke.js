const { startPuppetServer } = require("./dist/scripts/lab/puppetserver");
(async () => {
  const t = Date.now();
  const lab = await startPuppetServer({ dir: "/tmp/pslab1", port: 18140 });
  console.log("ready in", Date.now() - t, "ms", lab.espmCert);
  const { puppetServerBackends } = require("./dist/agent/ca/puppetserver");
  const b = puppetServerBackends({ puppetserver: { url: lab.url, ca_bundle: lab.caBundle, cert: lab.espmCert, key: lab.espmKey, class_cache_seconds: 30 } });
  console.log(await b.ca.health(), await b.ca.status("espm"), await b.ca.status("nope"));
  console.log(JSON.stringify(await b.classes.classes("production")));
  await lab.stop();
})().catch(e => { console.error(e); process.exit(1); });
