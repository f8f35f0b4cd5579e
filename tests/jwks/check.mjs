// Checks an access token the way a service would: jose, with nothing but the JWKS URL.
//   node check.mjs verify <jwks url> <token> [issuer]  → {"ok":true,"payload":…} or {"ok":false,"error":…}
//   node check.mjs forge <alg> <kid> <claims json>      → a token signed by a key made here
import { createRemoteJWKSet, jwtVerify, generateKeyPair, SignJWT } from "jose";

const [mode, ...args] = process.argv.slice(2);

if (mode === "verify") {
  const [url, token, issuer] = args;
  const jwks = createRemoteJWKSet(new URL(url));
  try {
    const options = { algorithms: ["EdDSA", "ES256"], typ: "JWT" };
    if (issuer) options.issuer = issuer;
    const { payload, protectedHeader } = await jwtVerify(token, jwks, options);
    console.log(JSON.stringify({ ok: true, payload, header: protectedHeader }));
  } catch (error) {
    console.log(JSON.stringify({ ok: false, error: `${error.code ?? ""} ${error.message}` }));
  }
} else if (mode === "forge") {
  const [alg, kid, claims] = args;
  const { privateKey } = await generateKeyPair(alg, { crv: alg === "EdDSA" ? "Ed25519" : undefined });
  const token = await new SignJWT(JSON.parse(claims))
    .setProtectedHeader({ alg, kid, typ: "JWT" })
    .sign(privateKey);
  console.log(token);
} else {
  console.error("usage: check.mjs verify <jwks url> <token> [issuer] | forge <alg> <kid> <claims>");
  process.exit(2);
}
