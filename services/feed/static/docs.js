// LineWatch /docs: start Swagger UI on this feed's own schema (no inline script: CSP).
"use strict";
(function () {
  // Where reads need a token, /docs is opened with a short-lived read ticket
  // (POST /api/stream/ticket); the schema is fetched with the same ticket, and the ticket is
  // taken out of the address bar at once. Tokens go only in the Authorize dialog (a header),
  // which is not persisted.
  const ticket = new URLSearchParams(location.search).get("ticket");
  if (ticket) history.replaceState(null, "", location.pathname);
  window.ui = SwaggerUIBundle({
    url: "/docs/openapi.json" + (ticket ? "?ticket=" + encodeURIComponent(ticket) : ""),
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: false,
    validatorUrl: null,          // the default would ask validator.swagger.io
    persistAuthorization: false,  // a pasted token is never written to localStorage
    queryConfigEnabled: false,    // ?url= cannot point this page at another schema
  });
})();
