// The overview map: sites, route lines and detections from the JSON embedded in the page. No tile layer unless
// the server was started with a tile URL template (data-tiles), so nothing is requested from other hosts.
// Layers are built first and added after the view is set (permanent tooltips need a view to place themselves).
(function () {
  "use strict";
  var el = document.getElementById("map");
  var data = JSON.parse(document.getElementById("map-data").textContent);
  var map = L.map(el, { attributionControl: false, zoomSnap: 0.25 });
  var layers = [];
  // The view frames the routes (a far-away depot or shipyard would shrink the ports to dots); all sites are drawn.
  var bounds = L.latLngBounds([]);
  var siteBounds = L.latLngBounds([]);
  data.sites.forEach(function (s) {
    var layer = L.geoJSON(s.geometry, { style: { color: "#1f77b4", weight: 2, fillOpacity: 0.2 } });
    layer.bindTooltip(s.name + " (" + s.kind + ")", { permanent: true, direction: "right" });
    siteBounds.extend(layer.getBounds());
    layers.push(layer);
  });
  data.routes.forEach(function (r) {
    layers.push(L.polyline([r.from, r.to], { color: "#444", weight: 2, dashArray: "6 4" }).bindTooltip(r.name));
    bounds.extend(r.from);
    bounds.extend(r.to);
  });
  if (!bounds.isValid()) { bounds = siteBounds; }
  var colours = { image: "#c00000", ais: "#e07000", report: "#1f5fbf" };
  data.detections.forEach(function (d) {
    layers.push(L.circleMarker([d.lat, d.lon], { radius: 4, color: "#fff", weight: 1, fillColor: colours[d.kind] || "#555", fillOpacity: 0.9 })
      .bindTooltip(d.time + " " + d.kind + " " + (d.vessel || "unidentified"))
      .on("click", function () { window.location.href = "/sightings/" + encodeURIComponent(d.id); }));
    if (!data.routes.length) { bounds.extend([d.lat, d.lon]); }
  });
  if (bounds.isValid()) { map.fitBounds(bounds.pad(0.1)); } else { map.setView([0, 0], 2); }
  if (el.dataset.tiles) { L.tileLayer(el.dataset.tiles, { maxZoom: 18 }).addTo(map); }
  layers.forEach(function (layer) { layer.addTo(map); });
})();
